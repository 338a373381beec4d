"""LM faults: errors a provider raises, and outputs that are empty, garbage or do not parse.

Faults are injected with ScriptedLM, which runs through DSPy's real LM call path (a DummyLM is a
"managed" LM in DSPy 3.4): DSPy itself retries LMRateLimitError, LMTimeoutError, LMServerError
and LMTransportError ``num_retries`` times (3 by default) with exponential backoff or the
provider's ``retry_after``, and falls back from the ChatAdapter to the JSONAdapter once when a
reply does not parse. personaagent adds no retries of its own. What it guarantees on top:

* PersonaAlignment never fails on a bad step: the step is recorded as a StepSkipped trace event
  and the persona in force stays, never replaced by empty text, JSON, scaffolding, the critique
  or the optimizer's own instructions.
* PersonaAgent never makes up an answer: a failed or unparseable call raises (see its docstring).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import dspy
import pytest
from dspy.utils.exceptions import (
    AdapterParseError,
    ContextWindowExceededError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
    LMUnexpectedError,
)

from personaagent.agent import PersonaAgent
from personaagent.errors import QueryTooLong
from personaagent.optimizers import PersonaAlignment
from personaagent.records import AnswerFormat, CompileFinished, Edited, StepSkipped
from personaagent.signatures import CritiqueAnswer, UpdatePersona
from personaagent.testing import ScriptedLM

LABELS = AnswerFormat(kind="label", labels=("SPORTS", "POLITICS"))
RATING = AnswerFormat(kind="rating", min_rating=1.0, max_rating=5.0)
GOOD_PERSONA = "You love SPORTS above everything and always answer SPORTS for such items."
ITEM_KIND = "match reports"
#: Output field each step of the loop asks for.
STEP_FIELD = {"simulate": "answer", "critique": "item_kind", "edit": "new_persona"}

# retry_after=0 keeps DSPy's retries instant; without it DSPy sleeps 1 s, 2 s, 4 s.
FAULTS = {
    "timeout": LMTimeoutError("request timed out", retry_after=0),
    "rate-limit": LMRateLimitError("429 too many requests", retry_after=0),
    "server-error": LMServerError("502 bad gateway", retry_after=0),
    "context-length": ContextWindowExceededError(model="dummy"),
    "crash": RuntimeError("engine crashed"),
    "empty-output": "",
    "garbage-output": "lorem ipsum dolor sit amet",
    "unparseable-json": '{"answer": ',
}
#: Faults DSPy retries: the request is made 1 + num_retries times.
TRANSIENT = {"timeout", "rate-limit", "server-error"}
#: How each fault surfaces after DSPy: its own class, LMUnexpectedError, or a parse error.
SURFACES_AS = {
    "timeout": "LMTimeoutError",
    "rate-limit": "LMRateLimitError",
    "server-error": "LMServerError",
    "context-length": "QueryTooLong",  # the agent turns the overflow into its own one-line error
    "crash": "LMUnexpectedError",
    "empty-output": "AdapterParseError",
    "garbage-output": "AdapterParseError",
    "unparseable-json": "AdapterParseError",
}


def persona_sensitive(request):
    if request.asks_for("tool_name"):
        return {"tool_name": "finish", "tool_input": ""}
    if request.asks_for("answer"):
        return {"answer": "SPORTS" if "love SPORTS" in request.system else "POLITICS"}
    if request.asks_for("item_kind"):
        return {"item_kind": ITEM_KIND}
    if request.asks_for("new_persona"):
        return {"new_persona": GOOD_PERSONA}
    if request.asks_for("profile"):
        return {"profile": "Writes about games."}
    raise AssertionError(request.output_fields)


def faulty(field: str, fault):
    """The persona-sensitive script, except that calls asking for ``field`` get ``fault``."""

    def script(request):
        if not request.asks_for(field):
            return persona_sensitive(request)
        if isinstance(fault, Exception):
            raise fault
        return fault  # a raw completion string, or output field values

    return script


def seeded_agent(ws, answer_format=LABELS, **options):
    agent = PersonaAgent("u1", workspace=ws, answer_format=answer_format, use_actions=False, **options)
    for day in range(4):
        agent.observe(f"match report number {day}", "SPORTS" if answer_format is LABELS else "4",
                      timestamp=datetime(2021, 1, 1) + timedelta(days=day))
    seeded = agent.seeded()
    return seeded, seeded.commit_persona()


def align(ws, agent):
    # No held-out items: these tests count the faults of the batch's 3 simulations.
    return PersonaAlignment(num_recent=3, num_holdout=0).compile(agent)


def skipped(aligned) -> list[StepSkipped]:
    return [e for e in aligned.alignment_result.trace.events if isinstance(e, StepSkipped)]


# --- PersonaAlignment: every fault in every step ------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
@pytest.mark.parametrize("step", ["critique", "edit"])
def test_failed_critique_or_edit_step_is_skipped_and_the_persona_kept(make_ws, step, fault):
    ws = make_ws(faulty(STEP_FIELD[step], FAULTS[fault]))
    agent, before = seeded_agent(ws)
    aligned = align(ws, agent)  # never raises
    events = skipped(aligned)
    # Three failed critiques leave nothing to aggregate; a failed edit is the iteration's end.
    assert [e.step for e in events] == (["critique"] * 3 + ["aggregate"] if step == "critique" else ["edit"])
    # Critique and edit call DSPy directly, so an overflow keeps DSPy's own error name there.
    surfaces_as = "ContextWindowExceededError" if fault == "context-length" else SURFACES_AS[fault]
    assert all(surfaces_as in e.error for e in events if e.step == step)
    assert not any(isinstance(e, Edited) for e in aligned.alignment_result.trace.events)
    assert aligned.persona_text == before.text
    assert ws.personas.current("u1") == before
    assert isinstance(aligned.alignment_result.trace.events[-1], CompileFinished)
    assert aligned.alignment_result.status == "unchanged"
    calls_per_step = 4 if fault in TRANSIENT else 2 if SURFACES_AS[fault] == "AdapterParseError" else 1
    made = sum(r.asks_for(STEP_FIELD[step]) for r in ws.lm.requests)
    assert made == calls_per_step * (3 if step == "critique" else 1)


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_every_simulation_failing_ends_failed_without_touching_the_persona(make_ws, fault):
    ws = make_ws(faulty("answer", FAULTS[fault]))
    agent, before = seeded_agent(ws)
    aligned = align(ws, agent)
    simulate = [e for e in skipped(aligned) if e.step == "simulate"]
    # The agent's answer path turns a parse error into its own typed UnparseableAnswer.
    surfaces_as = "UnparseableAnswer" if SURFACES_AS[fault] == "AdapterParseError" else SURFACES_AS[fault]
    assert len(simulate) == 3 and all(surfaces_as in e.error for e in simulate)
    assert aligned.alignment_result.status == "failed"
    # Nothing was learned from answers that never came: no critique, no edit, no new version.
    assert not any(r.asks_for("item_kind") or r.asks_for("new_persona") for r in ws.lm.requests)
    assert ws.personas.current("u1") == before
    assert aligned.persona_text == before.text


GARBAGE_EDITS = {
    "empty": "",
    "whitespace": " \n\t ",
    "json": '{"new_persona": "You love SPORTS above everything."}',
    "scaffolding": "[[ ## new_persona ## ]]\nYou love SPORTS above everything.\n[[ ## completed ## ]]",
    "copy-of-gradient": f"1. This user answers SPORTS for \"{ITEM_KIND}\", not POLITICS.",
    "update-instructions": UpdatePersona.instructions,
    "critique-instructions": CritiqueAnswer.instructions,
    "unchanged": None,  # the current persona, given back as the edit
    "huge": "You love SPORTS. " * 1000,
}


@pytest.mark.parametrize("garbage", GARBAGE_EDITS, ids=list(GARBAGE_EDITS))
def test_garbage_edit_never_replaces_the_persona(make_ws, garbage):
    texts = {}

    def script(request):
        if request.asks_for("new_persona"):
            value = GARBAGE_EDITS[garbage]
            return {"new_persona": texts["before"] if value is None else value}
        return persona_sensitive(request)

    ws = make_ws(script)
    agent, before = seeded_agent(ws)
    texts["before"] = before.text
    aligned = align(ws, agent)
    assert [e.step for e in skipped(aligned)] == ["edit"]
    assert not any(isinstance(e, Edited) for e in aligned.alignment_result.trace.events)
    assert ws.personas.history("u1") == [before]
    assert aligned.persona_text == before.text


@pytest.mark.parametrize("item_kind", ["", "   "], ids=["empty", "blank"])
def test_empty_critiques_stop_the_iteration_before_any_edit(make_ws, item_kind):
    ws = make_ws(faulty("item_kind", {"item_kind": item_kind}))
    agent, before = seeded_agent(ws)
    aligned = align(ws, agent)
    assert [e.step for e in skipped(aligned)] == ["critique"] * 3 + ["aggregate"]
    assert not any(r.asks_for("new_persona") for r in ws.lm.requests)
    assert ws.personas.current("u1") == before


def test_a_transient_error_is_retried_by_dspy_and_the_step_succeeds(make_ws):
    attempts = {"critique": 0}

    def script(request):
        if request.asks_for("item_kind"):
            attempts["critique"] += 1
            if attempts["critique"] <= 2:  # the first call fails twice, then goes through
                raise LMRateLimitError("429", retry_after=0)
        return persona_sensitive(request)

    ws = make_ws(script)
    agent, _ = seeded_agent(ws)
    aligned = align(ws, agent)
    assert skipped(aligned) == []
    assert attempts["critique"] == 3 + 2  # three critiques, the first one after two retries
    assert aligned.alignment_result.status == "edited"
    # The retries are inside one DSPy call: the budget meter counts calls, not attempts.
    assert aligned.alignment_result.usage.calls == 3 + 3 + 1 + 3


# --- PersonaAgent's answer path: a failure raises, it never returns a made-up answer ------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("rate-limit", LMRateLimitError),
        ("timeout", LMTimeoutError),
        ("context-length", QueryTooLong),
        ("crash", LMUnexpectedError),
        ("empty-output", AdapterParseError),
        ("garbage-output", AdapterParseError),
    ],
)
def test_a_failed_answer_call_raises_a_clear_error(make_ws, fault, expected):
    ws = make_ws(faulty("answer", FAULTS[fault]))
    agent, _ = seeded_agent(ws)
    with pytest.raises(expected):
        agent("match report number 9")


def test_a_label_outside_the_set_raises(make_ws):
    ws = make_ws(faulty("answer", {"answer": "WEATHER"}))
    agent, _ = seeded_agent(ws)
    with pytest.raises(AdapterParseError):
        agent("match report number 9")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "five", ""])
def test_a_rating_that_is_not_a_finite_number_raises(make_ws, value):
    ws = make_ws(faulty("answer", {"answer": value}))
    agent, _ = seeded_agent(ws, answer_format=RATING)
    with pytest.raises(AdapterParseError):
        agent("match report number 9")


def test_an_out_of_range_rating_is_clamped_not_rejected(make_ws):
    ws = make_ws(faulty("answer", {"answer": "9"}))
    agent, _ = seeded_agent(ws, answer_format=RATING)
    assert agent("match report number 9").answer == 5.0


def test_a_garbage_tool_choice_raises_like_a_garbage_answer(make_ws):
    ws = make_ws(faulty("tool_name", {"tool_name": "rm -rf /", "tool_input": "x"}))
    agent = PersonaAgent("u1", workspace=ws, answer_format=LABELS)
    agent.observe("match report", "SPORTS")
    with pytest.raises(AdapterParseError):
        agent("match report number 9")


def test_a_failing_user_tool_does_not_fail_the_answer(make_ws):
    def broken(query: str) -> str:
        """Always fails."""
        raise TimeoutError("weather service down")

    def script(request):
        if request.asks_for("tool_name"):
            return {"tool_name": "broken", "tool_input": "x"}
        return persona_sensitive(request)

    ws = make_ws(script)
    agent = PersonaAgent("u1", workspace=ws, answer_format=LABELS, tools=[broken])
    prediction = agent("match report number 9")
    assert prediction.answer == "POLITICS"
    assert prediction.used_tools[0].observation.startswith("(tool failed: TimeoutError")


def test_dspy_retries_apply_to_scripted_lms_as_to_real_ones():
    # The premise of this file: a ScriptedLM is retried by DSPy exactly like dspy.LM.
    lm = ScriptedLM(faulty("answer", FAULTS["rate-limit"]))
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter()), pytest.raises(LMRateLimitError):
        dspy.Predict("question -> answer")(question="q")
    assert len(lm.requests) == 1 + lm.num_retries == 4
