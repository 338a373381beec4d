"""ContinualAlignment re-aligns every k new interactions, off the answer path."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from personaagent.agent import PersonaAgent
from personaagent.config import Settings
from personaagent.optimizers import ContinualAlignment, PersonaAlignment
from personaagent.records import AnswerFormat
from personaagent.testing import ScriptedLM
from personaagent.workspace import Workspace

LABELS = AnswerFormat(kind="label", labels=("SPORTS", "POLITICS"))
ALIGNED = "You love SPORTS above everything and always answer SPORTS for such items."


def script_with(gate: threading.Event | None = None):
    def script(request):
        if request.asks_for("new_persona") and gate is not None:
            gate.wait(timeout=10)  # hold the re-alignment until the test lets it finish
        fixed = {"answer": "SPORTS" if "love SPORTS" in request.system else "POLITICS",
                 "item_kind": "match reports", "new_persona": ALIGNED, "profile": "Writes about games."}
        return {field: fixed[field] for field in request.output_fields}

    return script


@pytest.fixture
def make_agent(tmp_path, hashing_embedder):
    workspaces = []

    def build(script):
        ws = Workspace(Settings(home=tmp_path, store=":memory:"), lm=ScriptedLM(script), embedder=hashing_embedder)
        workspaces.append(ws)
        return PersonaAgent("u1", workspace=ws, answer_format=LABELS, use_actions=False)

    yield build
    for ws in workspaces:
        ws.close()


def observe_days(live: ContinualAlignment, days: range) -> None:
    for day in days:
        live.observe(f"match report {day}", "SPORTS", timestamp=datetime(2023, 1, 1) + timedelta(days=day))


def test_realigns_after_every_k_new_interactions_inline(make_agent):
    agent = make_agent(script_with())
    live = ContinualAlignment(agent, every=3, background=False)
    observe_days(live, range(2))
    assert live.alignments == 0 and agent.stored_persona() is None
    observe_days(live, range(2, 3))
    assert live.alignments == 1
    assert live.agent.persona_text == ALIGNED and live.agent.stored_persona().text == ALIGNED
    assert live.agent("another match").answer == "SPORTS"
    assert agent.persona_text != ALIGNED  # the agent given is never edited in place
    observe_days(live, range(2, 3))  # a duplicate is not a new interaction
    assert live.pending == 0
    live.close()


def test_background_alignment_does_not_block_answers(make_agent):
    release = threading.Event()
    agent = make_agent(script_with(release))
    live = ContinualAlignment(agent, aligner=PersonaAlignment(num_recent=3), every=3)
    observe_days(live, range(3))  # starts a re-alignment that waits inside the edit call
    assert agent("a match").answer == "POLITICS"  # answered with the old persona meanwhile
    assert live.agent.persona_text != ALIGNED
    release.set()
    live.wait()
    assert live.agent.persona_text == ALIGNED and live.agent("a match").answer == "SPORTS"
    assert live.alignments == 1
    live.close()


def test_every_must_be_positive(make_agent):
    with pytest.raises(ValueError, match="every"):
        ContinualAlignment(make_agent(script_with()), every=0)


def test_realignment_recounts_the_facts_of_the_grown_history(make_agent):
    agent = make_agent(script_with())
    for day in range(3):
        agent.observe(f"match report {day}", "SPORTS", timestamp=datetime(2023, 1, 1) + timedelta(days=day))
    seeded = agent.seeded()
    seeded.commit_persona()
    assert "Your answers to 3 past items: SPORTS 100%." in seeded.persona_text
    live = ContinualAlignment(seeded, every=3, background=False)
    for day in range(3, 6):
        live.observe(f"vote report {day}", "POLITICS", timestamp=datetime(2023, 1, 1) + timedelta(days=day))
    assert live.alignments == 1
    sources = [p.provenance.source for p in agent.workspace.personas.history("u1")]
    assert sources[:2] == ["seed", "recount"]
    assert "Your answers to 6 past items: SPORTS 50%, POLITICS 50%." in live.agent.persona_text
    live.close()
