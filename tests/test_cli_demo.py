"""`demo` on the committed news sample, with a scripted LM standing in for the local model."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
import re

from conftest import CLI_LM_FIELDS
from personaagent import cli
from personaagent.config import load_settings
from personaagent.runtime.embedder import HashingEmbedder
from personaagent.testing import LMRequest, ScriptedLM
from personaagent.workspace import Workspace


def _news_script(request: LMRequest) -> dict[str, str]:
    """CRIME (the news task's labels are upper-case HuffPost categories) until the persona is the
    edited one; then the most frequent category among the retrieved past articles."""
    frequent = re.search(r"Most frequent past answers: \"?([A-Z&' .]+?)\"? \(", request.user)
    edited = CLI_LM_FIELDS["new_persona"] in request.system
    return {**CLI_LM_FIELDS, "answer": frequent.group(1) if edited and frequent else "CRIME"}


@pytest.fixture
def news_workspace(tmp_path, hashing_embedder: HashingEmbedder):
    workspace = Workspace(
        load_settings(store=str(tmp_path / "store")),
        lm=ScriptedLM(_news_script),
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
    assert "Compile: edited" in out  # the edit answered more of the author's recent articles right
    assert "Persona v2:\n" + CLI_LM_FIELDS["new_persona"] in out
    answer = out.split("Answer: ", 1)[1].splitlines()[0]
    assert answer != "CRIME" and "Gold:   " in out  # answered with the compiled persona
    run_id = out.rsplit("personaagent trace show ", 1)[1].strip()
    assert (news_workspace.settings.traces_dir / run_id).is_dir()
    assert "... Compiling the persona" in result.stderr
    shown = CliRunner().invoke(cli.cli, ["trace", "show", run_id], obj=news_workspace)
    assert f"User {user!r} in run {run_id}" in shown.stdout
