"""The evaluation suite runs every method on the same users and charges alignment to the queries."""

from __future__ import annotations

import json

import pytest

from personaagent.config import Settings
from personaagent.evaluation import load_task
from personaagent.evaluation.methods import LLM_METHODS
from personaagent.evaluation.suite import DEFAULT_METHODS, run_suite
from personaagent.testing import ScriptedLM
from personaagent.workspace import Workspace


def answers_politics(request):
    fixed = {"answer": "POLITICS", "tool_name": "finish", "next_tool_name": "finish", "next_tool_args": {}}
    return {field: fixed.get(field, "The user writes about politics and elections.") for field in request.output_fields}


@pytest.fixture
def workspace(tmp_path, hashing_embedder):
    ws = Workspace(Settings(home=tmp_path / "home", store=str(tmp_path / "store")), lm=ScriptedLM(answers_politics), embedder=hashing_embedder)
    yield ws
    ws.close()


def test_every_method_runs_and_results_are_written(workspace, tmp_path):
    task = load_task("news")
    out = tmp_path / "eval"
    results = run_suite(task.examples("test", num_users=2), workspace, out, pool=task.profile_pool())
    names = [r.method for r in results]
    assert names[:3] == ["global majority", "user majority", "kNN vote (k=5)"]
    assert names[3:] == list(LLM_METHODS)
    for result in results:
        assert result.num_users == 2 and result.num_queries == 6
    by_name = {r.method: r for r in results}
    # Always answering POLITICS scores exactly the share of POLITICS golds.
    golds = [e.gold for e in task.examples("test", num_users=2)]
    assert by_name["non-personalized"].metrics["accuracy"] == pytest.approx(golds.count("POLITICS") / 6)
    assert by_name["non-personalized"].lm_calls_per_query == 1.0
    # PersonaAgent pays for its profile and alignment on top of its answers.
    assert by_name["PersonaAgent"].lm_calls_per_query > by_name["w/o alignment"].lm_calls_per_query
    assert by_name["global majority"].lm_calls_per_query == 0
    saved = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in saved] == names
    assert "| PersonaAgent |" in (out / "results.md").read_text()
    saved_answers = [json.loads(line) for line in (out / "predictions-w-o-memory.jsonl").read_text().splitlines()]
    assert len(saved_answers) == 6
    assert {row["gold"] for row in saved_answers} == set(golds)
    assert all(row["answer"] == "POLITICS" for row in saved_answers)
    # PersonaAgent against every other method, paired on the same 6 queries.
    paired = (out / "paired.md").read_text().splitlines()[2:]
    assert len(paired) == len(names) - 1 and all(row.startswith("| PersonaAgent | ") for row in paired)
    assert all(" | 6 | " in row for row in paired)
    # What alignment did, for the methods that align, each over its 2 users' compiles.
    outcomes = (out / "alignment.md").read_text().splitlines()
    assert [line.split(":")[0] for line in outcomes] == ["- PersonaAgent", "- w/o memory", "- w/o action"]
    assert all(": 2 compiles:" in line for line in outcomes)


def test_evaluation_never_touches_the_users_real_memory(workspace, tmp_path):
    run_suite(load_task("news").examples("test", num_users=1), workspace, tmp_path / "eval", methods=["RAG"])
    assert workspace.episodic.user_ids() == []
    assert workspace.personas.user_ids() == []


def test_unknown_method_is_refused_before_any_work(workspace, tmp_path):
    with pytest.raises(KeyError, match="unknown method"):
        run_suite(load_task("news").examples("test"), workspace, tmp_path, methods=["GPT-5"])
    assert workspace.lm.requests == []
    assert "baselines" in DEFAULT_METHODS
