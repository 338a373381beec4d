"""Issue 11, kind 2: naive and aware datetimes mixed. Every public entry point that takes a time
reads a naive one as UTC (records.as_aware), so they compare instead of raising TypeError."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dspy
import pytest

from personaagent import testing
from personaagent.actions import MEMORY_SEARCH, builtin_tools, search_memories
from personaagent.agent import PersonaAgent
from personaagent.config import Settings
from personaagent.errors import InvalidRecord
from personaagent.evaluation.tasks import TaskExample, TaskSpec
from personaagent.optimizers import PersonaAlignment
from personaagent.optimizers.alignment_utils import latest_examples
from personaagent.records import AnswerFormat, Interaction, Simulated, StepSkipped, as_aware
from personaagent.testing import ScriptedLM
from personaagent.workspace import Workspace

LABELS = AnswerFormat(kind="label", labels=("SPORTS", "POLITICS"))
UTC = timezone.utc


@pytest.fixture
def ws(tmp_path, hashing_embedder):
    workspace = Workspace(
        Settings(home=tmp_path / "home", store=":memory:"),
        lm=ScriptedLM(testing.persona_sensitive()),
        embedder=hashing_embedder,
    )
    yield workspace
    workspace.close()


def agent_with_history(ws: Workspace) -> PersonaAgent:
    agent = PersonaAgent("u1", workspace=ws, answer_format=LABELS, use_actions=False)
    for day in range(1, 6):  # stored aware (a naive timestamp is read as UTC by Interaction)
        agent.observe(f"match report {day}", "SPORTS", timestamp=datetime(2024, 1, day, tzinfo=UTC))
    return agent


def simulations(aligned) -> list[Simulated]:
    return [e for e in aligned.alignment_result.trace.events if isinstance(e, Simulated)]


def test_a_trainset_of_naive_timestamps_is_simulated_not_failed(ws):
    # The issue's exact case: every simulation failed with "can't compare offset-naive and
    # offset-aware datetimes" and the compile ended `failed 0.0 -> 0.0`.
    agent = agent_with_history(ws)
    trainset = [
        dspy.Example(query=f"match report {d}", answer="SPORTS", timestamp=datetime(2024, 1, d)).with_inputs("query")
        for d in range(1, 6)
    ]
    aligned = PersonaAlignment(num_recent=3).compile(agent, trainset=trainset)
    assert not [e for e in aligned.alignment_result.trace.events if isinstance(e, StepSkipped) and e.step == "simulate"]
    assert aligned.alignment_result.status == "edited"
    assert (aligned.alignment_result.score_initial, aligned.alignment_result.score_final) == (0.0, 1.0)


def test_a_trainset_mixing_naive_and_aware_timestamps_compiles_and_orders_by_time(ws):
    agent = agent_with_history(ws)
    trainset = [
        dspy.Example(query="match report 5", answer="SPORTS", timestamp=datetime(2024, 1, 5)),  # naive, newest
        dspy.Example(query="match report 1", answer="SPORTS", timestamp=datetime(2024, 1, 1, tzinfo=UTC)),
        dspy.Example(query="match report 4", answer="SPORTS", timestamp=datetime(2024, 1, 4, 12, tzinfo=UTC)),
        dspy.Example(query="match report 3", answer="SPORTS", timestamp=datetime(2024, 1, 3)),
    ]
    trainset = [example.with_inputs("query") for example in trainset]
    aligned = PersonaAlignment(num_recent=3).compile(agent, trainset=trainset)
    batch = [s.query for s in simulations(aligned) if s.phase == "batch"][:3]
    assert batch == ["match report 3", "match report 4", "match report 5"]
    assert aligned.alignment_result.status == "edited"


def test_ask_with_a_naive_before_cuts_memories_as_utc(ws):
    agent = agent_with_history(ws)
    prediction = agent("match report 9", before=datetime(2024, 1, 3))  # naive: raised TypeError
    assert sorted(m.interaction.query for m in prediction.retrieved) == ["match report 1", "match report 2"]


def test_search_memories_and_the_memory_search_tool_take_a_naive_before(ws):
    agent_with_history(ws)
    found = search_memories(ws.episodic, "u1", "match report", k=5, before=datetime(2024, 1, 2, 12))
    assert sorted(m.interaction.query for m in found) == ["match report 1", "match report 2"]
    tools = builtin_tools("u1", episodic=ws.episodic, knowledge=ws.knowledge, before=datetime(2024, 1, 2, 12))
    observation = next(t for t in tools if t.name == MEMORY_SEARCH)(query="match report")
    assert "match report 1" in observation and "match report 2" in observation
    assert "match report 3" not in observation


def test_a_before_with_another_offset_compares_as_the_same_instant(ws):
    agent_with_history(ws)
    # 2024-01-03 01:00 at +02:00 is 2024-01-02 23:00 UTC: day 3 (00:00 UTC) is not before it.
    cut = datetime(2024, 1, 3, 1, tzinfo=timezone(timedelta(hours=2)))
    found = search_memories(ws.episodic, "u1", "match report", k=5, before=cut)
    assert sorted(m.interaction.query for m in found) == ["match report 1", "match report 2"]


@pytest.mark.parametrize(
    "moment",
    [datetime(2024, 1, 3), date(2024, 1, 3), "2024-01-03", "2024-01-03T00:00:00", "2024-01-03T00:00:00Z", 1704240000],
)
def test_every_form_of_a_time_reads_as_the_same_utc_instant(moment):
    assert as_aware(moment) == datetime(2024, 1, 3, tzinfo=UTC)


def test_an_aware_time_keeps_its_offset_and_none_stays_none():
    plus_two = datetime(2024, 1, 3, 9, tzinfo=timezone(timedelta(hours=2)))
    assert as_aware(plus_two) is plus_two
    assert as_aware(None) is None


def test_a_time_that_is_not_a_time_is_an_invalid_record():
    with pytest.raises(InvalidRecord, match="not a time"):
        as_aware("next tuesday")
    with pytest.raises(InvalidRecord, match="not a time"):
        latest_examples([dspy.Example(query="q", answer="a", timestamp="next tuesday")], 1)


def test_latest_examples_sorts_naive_aware_dates_and_strings_together():
    examples = [
        dspy.Example(query="c", timestamp="2024-01-03"),
        dspy.Example(query="undated"),
        dspy.Example(query="a", timestamp=date(2024, 1, 1)),
        dspy.Example(query="d", timestamp=datetime(2024, 1, 4)),
        dspy.Example(query="b", timestamp=datetime(2024, 1, 2, tzinfo=UTC)),
    ]
    assert [e.query for e in latest_examples(examples, 5)] == ["undated", "a", "b", "c", "d"]


def test_records_read_naive_times_as_utc():
    interaction = Interaction(user_id="u1", query="q", response="r", timestamp=datetime(2024, 1, 3))
    assert interaction.timestamp == datetime(2024, 1, 3, tzinfo=UTC)
    spec = TaskSpec(name="t", kind="label", labels=("A", "B"))
    example = TaskExample(user_id="u1", query="q", gold="A", profile=(), spec=spec, timestamp=datetime(2024, 1, 3))
    assert example.timestamp == datetime(2024, 1, 3, tzinfo=UTC)
    assert example.as_interaction().timestamp < datetime(2024, 1, 4, tzinfo=UTC)
