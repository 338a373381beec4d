"""`demo` on the committed news sample, with a DummyLM standing in for the local model."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from dspy.utils import DummyLM

from conftest import CLI_LM_FIELDS
from personaagent import cli
from personaagent.config import load_settings
from personaagent.runtime.embedder import HashingEmbedder
from personaagent.workspace import Workspace


@pytest.fixture
def news_workspace(tmp_path, hashing_embedder: HashingEmbedder):
    # The news task's labels are upper-case HuffPost categories.
    workspace = Workspace(
        load_settings(store=str(tmp_path / "store")),
        lm=DummyLM({"": {**CLI_LM_FIELDS, "answer": "CRIME"}}),
        embedder=hashing_embedder,
    )
    yield workspace
    workspace.close()


def test_demo_ingests_compiles_and_answers(news_workspace: Workspace) -> None:
    result = CliRunner().invoke(cli.cli, ["demo"], obj=news_workspace, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.stdout
    user = out.splitlines()[0].removeprefix("User: ").split(" (")[0]
    assert news_workspace.episodic.count(user) >= 20
    assert "Answer: CRIME" in out and "Gold:   " in out
    assert "Persona v2:\n" + CLI_LM_FIELDS["new_persona"] in out
    run_id = out.rsplit("personaagent trace show ", 1)[1].strip()
    assert (news_workspace.settings.traces_dir / run_id).is_dir()
    assert "... Compiling the persona" in result.stderr
    shown = CliRunner().invoke(cli.cli, ["trace", "show", run_id], obj=news_workspace)
    assert f"User {user!r} in run {run_id}" in shown.stdout
