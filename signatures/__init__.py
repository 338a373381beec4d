"""The DSPy signatures of PersonaAgent, installed as ``personaagent.signatures``.

Fixed signatures are classes; the two whose output type depends on the task or on the tools a
user registered (``response_signature`` and ``tool_choice_signature``) are built by factories,
so a tiny local model is constrained by the JSON schema to an allowed label or tool name.

The persona is not a field: it becomes the *instructions* of the persona-conditioned
signatures (``Respond`` and ``ChooseTool``), which is what the alignment optimizer edits.
"""

from __future__ import annotations

from typing import Any, Literal

import dspy

from personaagent.records import AnswerFormat

__all__ = [
    "SummarizeProfile",
    "RESPOND_TASK",
    "CHOOSE_TOOL_TASK",
    "response_signature",
    "tool_choice_signature",
    "CritiqueAnswer",
    "UpdatePersona",
]


class SummarizeProfile(dspy.Signature):
    """Summarize what this user's past interactions reveal about them: their interests, the
    topics they write or ask about, their tastes and how they tend to answer. Write about the
    user in general, in a few short sentences, not about single items."""

    history: str = dspy.InputField(desc="the user's past interactions, one per line: query => their response")
    profile: str = dspy.OutputField(desc="a short profile of the user")


#: Task instructions appended after the persona in the response predictor.
RESPOND_TASK = (
    "Answer the query exactly as this user would. The context holds the user's own most similar "
    "past interactions and what tools returned; past answers to similar queries are strong evidence."
)

#: Task instructions appended after the persona in the tool-selection predictor.
CHOOSE_TOOL_TASK = (
    "Pick the next tool that would best help answer the query for this user, or 'finish' when the "
    "context is already enough."
)


def response_signature(answer_format: AnswerFormat) -> type[dspy.Signature]:
    """The persona-conditioned answer signature, typed by the task.

    Args:
        answer_format: free text, a label from a fixed set, or a numeric rating.

    Returns:
        A signature ``query, context -> answer`` whose ``answer`` type is ``str``, a ``Literal``
        over the labels, or ``float``.
    """
    answer_type: Any
    if answer_format.kind == "label":
        answer_type = Literal[tuple(answer_format.labels)]  # type: ignore[valid-type]
        desc = "one of the allowed labels"
    elif answer_format.kind == "rating":
        answer_type = float
        desc = f"a rating from {answer_format.min_rating:g} to {answer_format.max_rating:g}"
    else:
        answer_type = str
        desc = "the answer, in this user's voice"
    return dspy.Signature(
        {
            "query": (str, dspy.InputField(desc="what the user asks now")),
            "context": (str, dspy.InputField(desc="the user's similar past interactions and tool results")),
            "answer": (answer_type, dspy.OutputField(desc=desc)),
        },
        RESPOND_TASK,
    )


def tool_choice_signature(tool_names: tuple[str, ...]) -> type[dspy.Signature]:
    """The persona-conditioned tool-selection signature over the given tool names.

    Args:
        tool_names: the names the model may choose from; ``"finish"`` is added if missing.
    """
    names = tool_names if "finish" in tool_names else (*tool_names, "finish")
    return dspy.Signature(
        {
            "query": (str, dspy.InputField(desc="what the user asks now")),
            "tools": (str, dspy.InputField(desc="the available tools, one per line: name: what it does")),
            "observations": (str, dspy.InputField(desc="what earlier tool calls returned")),
            "tool_name": (Literal[names], dspy.OutputField(desc="the tool to call next")),  # type: ignore[valid-type]
            "tool_input": (str, dspy.OutputField(desc="the text to pass to the tool")),
        },
        CHOOSE_TOOL_TASK,
    )


class CritiqueAnswer(dspy.Signature):
    """You are improving the persona (system prompt) of an assistant that must answer as a specific
    user. Compare the assistant's answer with the answer the user actually gave. Write feedback on
    how the persona should change so future answers match this user: describe the user's
    preferences, interests or habits that the persona is missing or gets wrong. Speak about the
    user in general, not only about this single item. If the answer was right, say which part of
    the persona to keep."""

    persona: str = dspy.InputField(desc="the current persona")
    query: str = dspy.InputField()
    assistant_answer: str = dspy.InputField(desc="what the assistant answered with this persona")
    user_answer: str = dspy.InputField(desc="what the user actually answered (the truth)")
    feedback: str = dspy.InputField(desc="the task metric's verdict on the assistant answer")
    critique: str = dspy.OutputField(desc="how the persona should change, about the user, in at most 40 words")


class UpdatePersona(dspy.Signature):
    """Rewrite the persona (the system prompt of an assistant that answers as a specific user) so
    it follows the feedback. Keep what the feedback says is right, add what it says is missing,
    fix what it says is wrong. Write it in second person ("You ..."), as instructions about the
    user's preferences and habits, in at most 100 words. Do not copy the feedback verbatim and do
    not mention single items."""

    persona: str = dspy.InputField(desc="the current persona")
    feedback: str = dspy.InputField(desc="aggregated feedback from recent interactions")
    new_persona: str = dspy.OutputField(desc="the rewritten persona, at most 100 words")
