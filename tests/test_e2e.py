"""End to end on the embedded local LM and the real embedding model: a real HuffPost author from
the committed sample is ingested, answered for, and aligned. Slow (tens of seconds), so e2e."""

from __future__ import annotations

import pytest

from personaagent.agent import PersonaAgent
from personaagent.config import Settings
from personaagent.evaluation import load_task
from personaagent.memory.semantic import split_fact_lines
from personaagent.optimizers import PersonaAlignment
from personaagent.records import Gated
from personaagent.traces import TraceReader
from personaagent.workspace import Workspace

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def real():
    import tempfile

    task = load_task("news")
    with tempfile.TemporaryDirectory() as home:
        with Workspace(Settings(home=home, store=f"{home}/store")) as ws:
            other, user = task.dev_users[0], task.dev_users[1]
            ws.episodic.add(task.profile(user))
            ws.episodic.add(task.profile(other))
            yield ws, task, user, other


def test_answer_with_real_models_uses_only_the_users_own_memories(real):
    ws, task, user, other = real
    agent = PersonaAgent(user, workspace=ws, answer_format=task.spec.answer_format).with_persona(
        "You are a personal assistant for a news writer. PERSONA-MARKER."
    )
    example = next(e for e in task.examples("dev") if e.user_id == user)
    # Quote the other user's text verbatim: their memories must still not come back.
    foreign = task.profile(other)[-1].query
    prediction = agent(f"{example.query}\n{foreign}")
    assert prediction.answer in task.spec.labels
    assert prediction.retrieved and {m.user_id for m in prediction.retrieved} == {user}
    assert all(foreign != m.interaction.query for m in prediction.retrieved)
    systems = [entry["messages"][0]["content"] for entry in ws.lm.history[-2:]]
    assert all("PERSONA-MARKER" in system for system in systems)  # tool choice and answer
    for call in prediction.used_tools:
        assert call.name in agent.act.tool_names
        assert other not in call.observation


def test_alignment_with_the_real_model_is_traced_step_by_step(real):
    ws, task, user, _ = real
    agent = PersonaAgent(user, workspace=ws, answer_format=task.spec.answer_format, use_actions=False).seeded()
    agent.commit_persona()
    aligned = PersonaAlignment(num_recent=3, traces_dir=ws.settings.traces_dir).compile(agent)
    (trace,) = TraceReader(ws.settings.traces_dir).run(aligned.alignment_result.run_id)
    kinds = [event.kind for event in trace.events]
    assert kinds[0] == "compile_started" and kinds[-1] == "compile_finished"
    assert kinds.count("simulated") >= 3
    assert all(e.truth and e.query for e in trace.events if e.kind == "simulated")
    batch = [e for e in trace.events if e.kind == "simulated" and e.phase == "batch" and e.iteration == 1]
    if any(e.score < 1.0 for e in batch):
        # The critique step ran, and the edit either reached the gate or was refused and recorded.
        assert "critiqued" in kinds or "step_skipped" in kinds
        assert "gated" in kinds or any(e.kind == "step_skipped" for e in trace.events)
    for gate in (e for e in trace.events if isinstance(e, Gated)):
        assert gate.accepted == (gate.score_after > gate.score_before)
    for edit in (e for e in trace.events if e.kind == "edited"):  # the counted facts pass through the edit
        assert split_fact_lines(edit.persona_after)[0] == split_fact_lines(edit.persona_before)[0]
    # At least one LM call per simulated answer (use_actions=False), plus any critique and edit.
    assert aligned.alignment_result.usage.calls >= kinds.count("simulated") + kinds.count("critiqued")
    assert aligned.alignment_result.usage.tokens > 0
    assert ws.personas.current(user).text == agent.persona_text  # compile stores nothing
    assert aligned.commit_persona().text == ws.personas.current(user).text == aligned.persona_text
