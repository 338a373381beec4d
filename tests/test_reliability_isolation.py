"""Isolation: nothing of user B ever reaches user A — not through retrieval, tools, personas or
traces — whatever A asks (including B's own text, verbatim) and whatever the user ids look like.

Every user's data carries a unique marker (``qzNNk``); the properties check that no marker but
A's own appears in what A gets back. One workspace (store, personas, traces of one compile of
every user) is built per module and shared by the hypothesis examples.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personaagent.agent import PersonaAgent
from personaagent.config import Settings
from personaagent.errors import InvalidRecord
from personaagent.optimizers import PersonaAlignment, commit_aligned
from personaagent.records import AnswerFormat, PersonaProvenance
from personaagent.runtime.embedder import HashingEmbedder
from personaagent.testing import ScriptedLM, persona_sensitive
from personaagent.traces import TraceReader
from personaagent.workspace import Workspace

LABELS = AnswerFormat(kind="label", labels=("SPORTS", "POLITICS"))

#: Ids that look like patterns, paths, SQL, or like each other once trimmed or normalized.
USERS = (
    "alice",
    " alice ",
    "alice ",
    "*",
    "%",
    "../x",
    "' OR 1=1 --",
    '{"$ne": null}',
    "x" * 256,
    "ユーザー🙂",
    "café",  # NFC
    "cafe\u0301",  # NFD: renders the same, is another user
)
#: The same topics for everyone, so similarity alone would happily mix users.
TOPICS = ("match report", "election night", "transfer rumours", "budget vote")


def marker(user_id: str) -> str:
    return f"qz{USERS.index(user_id):02d}k"


ANSWERS = persona_sensitive(
    critique="The user files most of these under sports.",
    new_persona="You love SPORTS above everything and answer SPORTS for these items.",
    profile="Writes about games.",
)


def script(request):
    if request.asks_for("tool_name"):
        # First step: search memory; second: the knowledge base. Inputs default to the query.
        tool = "knowledge_lookup" if "[memory_search]" in request.user else "memory_search"
        return {"tool_name": tool, "tool_input": ""}
    return ANSWERS(request)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """Every user with memories, documents, a persona history and one compile's trace."""
    root: Path = tmp_path_factory.mktemp("isolation")
    ws = Workspace(Settings(home=root / "home", store=":memory:"), lm=ScriptedLM(script), embedder=HashingEmbedder(64))
    aligner = PersonaAlignment(traces_dir=ws.settings.traces_dir)
    run_id = "isolation-run"
    for user_id in USERS:
        tag = marker(user_id)
        agent = PersonaAgent(user_id, workspace=ws, answer_format=LABELS, use_actions=False)
        for day, topic in enumerate(TOPICS):
            # The truth names the label SPORTS (records.match_label), which the seed persona never
            # answers: every user's compile makes an edit.
            # "SPORTS": the scripted edit then really improves the gate's score, so every user gets
            # an aligned persona version too; the tag in the query marks the memory as theirs.
            agent.observe(f"{topic} {tag} private note", "SPORTS", timestamp=datetime(2022, 1, 1) + timedelta(days=day))
        ws.knowledge.add_documents(user_id, [f"{topic} document {tag}" for topic in TOPICS])
        stored = ws.personas.add(user_id, f"You answer for the user tagged {tag}.", PersonaProvenance(source="manual"))
        commit_aligned(aligner.compile(agent.with_persona(stored), run_id=run_id), traces_dir=ws.settings.traces_dir)
    yield ws, run_id
    ws.close()


def others(user_id: str) -> list[str]:
    return [marker(other) for other in USERS if other != user_id]


def pairs_and_queries():
    """(A, B, query) where the query is random text or quotes B's memory or document verbatim."""

    @st.composite
    def build(draw):
        a = draw(st.sampled_from(USERS))
        b = draw(st.sampled_from([u for u in USERS if u != a]))
        topic = draw(st.sampled_from(TOPICS))
        query = draw(
            st.one_of(
                st.text(min_size=1, max_size=120).filter(str.strip),
                st.just(f"{topic} {marker(b)} private note"),
                st.just(f"{topic} document {marker(b)}"),
                st.just(f"SPORTS {marker(b)}"),
                st.just(b),
            )
        )
        return a, b, query

    return build()


HYPOTHESIS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYPOTHESIS
@given(case=pairs_and_queries())
def test_retrieval_returns_only_the_asking_users_memories(world, case):
    ws, _ = world
    a, b, query = case
    hits = ws.episodic.search(a, query, k=50)
    assert len(hits) == ws.episodic.count(a) == len(TOPICS)  # all of A's memories, nothing else
    assert {hit.user_id for hit in hits} == {a}
    text = " ".join(f"{h.interaction.query} {h.interaction.response}" for h in hits)
    assert marker(a) in text and not any(tag in text for tag in others(a))
    docs = ws.knowledge.search(a, query, k=50)
    assert len(docs) == len(TOPICS)
    assert not any(tag in doc.text for doc in docs for tag in others(a))


@HYPOTHESIS
@given(case=pairs_and_queries())
def test_agent_retrieval_and_tool_observations_stay_within_the_user(world, case):
    ws, _ = world
    a, b, query = case
    agent = PersonaAgent(a, workspace=ws, answer_format=LABELS, max_tool_steps=2)
    prediction = agent(query)
    assert prediction.retrieved and {m.user_id for m in prediction.retrieved} == {a}
    assert [call.name for call in prediction.used_tools] == ["memory_search", "knowledge_lookup"]
    for call in prediction.used_tools:
        assert marker(a) in call.observation
        assert not any(tag in call.observation for tag in others(a)), (call.name, call.observation)


@HYPOTHESIS
@given(case=pairs_and_queries())
def test_personas_and_traces_belong_to_their_user(world, case):
    ws, run_id = world
    a, _, _ = case
    history = ws.personas.history(a)
    assert len(history) >= 2 and {p.user_id for p in history} == {a}
    assert not any(tag in p.text for p in history for tag in others(a))
    trace = TraceReader(ws.settings.traces_dir).user(run_id, a)
    assert trace.events and {event.user_id for event in trace.events} == {a}
    dumped = " ".join(event.model_dump_json() for event in trace.events)
    assert marker(a) in dumped and not any(tag in dumped for tag in others(a))


def test_every_user_is_listed_once_under_their_exact_id(world):
    ws, run_id = world
    assert sorted(ws.episodic.user_ids()) == sorted(USERS)
    assert sorted(ws.personas.user_ids()) == sorted(USERS)
    assert sorted(t.user_id for t in TraceReader(ws.settings.traces_dir).run(run_id)) == sorted(USERS)


@pytest.mark.parametrize("bad", ["", "   ", "\t", "tab\there", "x" * 257])
def test_invalid_user_ids_are_rejected_everywhere_with_invalid_record(world, bad):
    ws, run_id = world
    with pytest.raises(InvalidRecord):
        PersonaAgent(bad, workspace=ws)
    with pytest.raises(InvalidRecord):
        ws.episodic.search(bad, "anything")
    with pytest.raises(InvalidRecord):
        ws.episodic.count(bad)
    with pytest.raises(InvalidRecord):
        ws.knowledge.search(bad, "anything")
    with pytest.raises(InvalidRecord):
        ws.personas.current(bad)
    with pytest.raises(InvalidRecord):
        TraceReader(ws.settings.traces_dir).user(run_id, bad)
