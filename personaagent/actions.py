"""Tools and persona-guided tool selection (the paper's action module).

Built-in tools act on one user's data only: ``memory_search`` (their episodic memory),
``memory_update`` (write a note to it) and ``knowledge_lookup`` (documents they provided).
Users add their own tools as ``dspy.Tool`` objects or plain one-argument callables.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

import dspy

from personaagent import telemetry
from personaagent.quoting import defuse_markers, interaction_line, quote
from personaagent.records import Interaction, Memory, ToolCall
from personaagent.signatures import tool_choice_signature

__all__ = [
    "MEMORY_SEARCH",
    "MEMORY_UPDATE",
    "KNOWLEDGE_LOOKUP",
    "FINISH",
    "BUILTIN_TOOL_NAMES",
    "format_memories",
    "as_ratings",
    "as_tool",
    "builtin_tools",
    "ActionModule",
]

logger = logging.getLogger(__name__)

MEMORY_SEARCH = "memory_search"
MEMORY_UPDATE = "memory_update"
KNOWLEDGE_LOOKUP = "knowledge_lookup"
FINISH = "finish"
BUILTIN_TOOL_NAMES = (MEMORY_SEARCH, MEMORY_UPDATE, KNOWLEDGE_LOOKUP)

#: Longest observation a tool may return into the prompt; a small model's context is 2k tokens.
MAX_OBSERVATION_CHARS = 1200


def format_memories(memories: Sequence[Memory], *, max_item_chars: int = 160) -> str:
    """Retrieved memories as prompt text: one ``"query" => "response"`` line each (a note the
    assistant saved is marked as one), then what the responses add up to, because for label and
    rating tasks the user's past answers are the key evidence: their mean when every one is a
    number (a small model averages poorly), else a tally of the most frequent. Stored text is
    quoted data (``quoting.quote``), never instructions."""
    if not memories:
        return "(no similar past interactions)"
    lines = [f"- {interaction_line(m.interaction, max_item_chars=max_item_chars)}" for m in memories]
    responses = [m.interaction.response.strip() for m in memories if m.interaction.is_evidence]
    ratings = as_ratings(responses)
    tally = Counter(responses)
    if ratings:
        lines.append(f"Mean of these past ratings: {sum(ratings) / len(ratings):.1f}")
    elif tally and max(tally.values()) > 1:
        lines.append(
            "Most frequent past answers: "
            + ", ".join(f"{quote(r, max_chars=max_item_chars)} ({n})" for r, n in tally.most_common(3))
        )
    return "\n".join(lines)


def as_ratings(texts: Sequence[str]) -> list[float] | None:
    """Every text as a finite number, or None when any is not one (then they are not ratings)."""
    try:
        values = [float(text) for text in texts]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def as_tool(tool: dspy.Tool | Callable[[str], str]) -> dspy.Tool:
    """A user tool as a ``dspy.Tool``; plain callables must take one string argument."""
    return tool if isinstance(tool, dspy.Tool) else dspy.Tool(tool)


def builtin_tools(
    user_id: str,
    *,
    episodic,
    knowledge,
    k: int = 5,
    read_only: bool = False,
    before: datetime | None = None,
    exclude_ids: Sequence[str] = (),
) -> list[dspy.Tool]:
    """The built-in tools, bound to one user.

    Args:
        user_id: every tool reads and writes this user's data only.
        episodic: the EpisodicMemory to search and update.
        knowledge: the KnowledgeBase to look up.
        k: results per search. Defaults to 5.
        read_only: make ``memory_update`` a no-op that says so; used while simulating past
            interactions, which must not write to memory. Defaults to False.
        before: only memories older than this are visible (simulation of a past interaction).
        exclude_ids: memories hidden from search (the interaction being simulated).
    """

    def memory_search(query: str) -> str:
        """Search this user's past interactions for ones similar to the query."""
        found = search_memories(episodic, user_id, query, k=k, before=before, exclude_ids=exclude_ids)
        return format_memories(found)

    def memory_update(note: str) -> str:
        """Save a short note about this user to their memory."""
        if read_only:
            return "(memory is read-only while simulating past interactions; nothing saved)"
        if not note.strip():
            return "(empty note; nothing saved)"
        report = episodic.add([Interaction(user_id=user_id, query=note.strip(), response="", metadata={"kind": "note"})])
        return "saved" if report.added else "already known"

    def knowledge_lookup(query: str) -> str:
        """Look up the documents this user provided."""
        hits = knowledge.search(user_id, query, k=k)
        if not hits:
            return "(no documents found)"
        return "\n".join(f"- {quote(hit.text, max_chars=300)}" for hit in hits)

    return [
        dspy.Tool(memory_search, name=MEMORY_SEARCH),
        dspy.Tool(memory_update, name=MEMORY_UPDATE),
        dspy.Tool(knowledge_lookup, name=KNOWLEDGE_LOOKUP),
    ]


def search_memories(
    episodic,
    user_id: str,
    query: str,
    *,
    k: int,
    before: datetime | None = None,
    exclude_ids: Sequence[str] = (),
) -> list[Memory]:
    """Top-k memories of one user, hiding ``exclude_ids`` and anything at or after ``before``
    (a naive time is UTC; undated memories count as oldest). Both are part of the store query
    (``EpisodicMemory.search``), so ``min(k, visible)`` memories come back.
    """
    return episodic.search(user_id, query, k=k, before=before, exclude_ids=exclude_ids)


class ActionModule(dspy.Module):
    """Persona-guided tool selection: up to ``max_steps`` tool calls, each chosen by the LM.

    Args:
        tool_names: names the selector may choose, besides ``finish``.
        max_steps: most tool calls per query. Defaults to 2.
    """

    def __init__(self, tool_names: Sequence[str], *, max_steps: int = 2) -> None:
        super().__init__()
        if max_steps < 0:
            raise ValueError("max_steps must be >= 0")
        self.tool_names = tuple(tool_names)
        self.max_steps = max_steps
        self.choose = dspy.Predict(tool_choice_signature(self.tool_names))

    def forward(self, query: str, tools: Sequence[dspy.Tool], observations: str = "") -> list[ToolCall]:
        by_name = {tool.name: tool for tool in tools}
        catalogue = "\n".join(f"{tool.name}: {tool.desc}" for tool in tools)
        calls: list[ToolCall] = []
        for _ in range(self.max_steps):
            choice = self.choose(query=query, tools=catalogue, observations=observations or "(none yet)")
            name = choice.tool_name
            if name == FINISH or name not in by_name:
                break
            tool_input = (choice.tool_input or "").strip() or query
            tool = by_name[name]
            with telemetry.span("personaagent.tool", kind="TOOL", attributes={"tool.name": name}):
                try:
                    # dspy.Tool takes keyword arguments; every tool here takes one text argument.
                    observation = str(tool(**{next(iter(tool.args)): tool_input}) if tool.args else tool())
                except Exception as exc:  # a user tool failing must not fail the answer
                    logger.warning("tool %s failed: %s", name, exc)
                    observation = f"(tool failed: {type(exc).__name__}: {exc})"
            # A tool's output is data: it must not fake a field of the prompt.
            observation = defuse_markers(observation[:MAX_OBSERVATION_CHARS])
            calls.append(ToolCall(name=name, tool_input=tool_input, observation=observation))
            observations = f"{observations}\n[{name}] {observation}".strip()
        return calls
