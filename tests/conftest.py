"""Shared fixtures. Every test runs with PERSONAAGENT_HOME in a temporary folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from personaagent import cli
from personaagent.config import Settings, load_settings
from personaagent.memory.store import EdgeStore, MemoryStore
from personaagent.runtime.embedder import HashingEmbedder
from personaagent.testing import LMRequest, ScriptedLM
from personaagent.testing import ScriptedLM
from personaagent.workspace import Workspace


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Tests must never read or write the real ~/.local/share/personaagent or its config.toml.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("PERSONAAGENT_HOME", str(home))
    monkeypatch.delenv("PERSONAAGENT_CONFIG", raising=False)
    return home


@pytest.fixture
def hashing_embedder() -> HashingEmbedder:
    return HashingEmbedder(dim=64)


@pytest.fixture
def memory_store(hashing_embedder: HashingEmbedder) -> Iterator[MemoryStore]:
    """A fresh temporary embedded store (":memory:"), closed and deleted after the test."""
    store = EdgeStore(":memory:", embedder_name=hashing_embedder.name, dim=hashing_embedder.dim)
    yield store
    store.close()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A folder for a persistent store (not created yet)."""
    return tmp_path / "store"


# --- the command line: a Workspace with a scripted LM and the hashing embedder -----------------------

#: Every LM call of a CLI test gets these fields; each predictor parses the ones it asks for.
#: The answer follows the persona (see ``_cli_script``), so an edit can really win the gate.
CLI_LM_FIELDS = {
    "answer": "sports",
    "tool_name": "finish",
    "tool_input": "",
    "profile": "Writes short news pieces, mostly about politics, sometimes sports.",
    "critique": "The user files election and policy stories under politics, not sports.",
    "item_kind": "election and policy stories",
    "new_persona": "You are a personal assistant for a reporter who files most of their stories under politics.",
}

def _cli_script(request: LMRequest) -> dict[str, str]:
    """CLI_LM_FIELDS, answering "politics" once the persona is the edited one, else "sports"."""
    edited = CLI_LM_FIELDS["new_persona"] in request.system
    return {**CLI_LM_FIELDS, "answer": "politics" if edited else "sports"}


#: A small history: one user, mostly politics, so the unedited persona's "sports" is often wrong.
CLI_HISTORY = [
    {"user_id": "alice", "query": f"{topic} story number {n}", "response": label,
     "timestamp": f"2024-01-0{n}T00:00:00Z"}
    for n, (topic, label) in enumerate(
        [("Senate vote", "politics"), ("Cup final", "sports"), ("Election poll", "politics"),
         ("Budget bill", "politics"), ("Governor race", "politics")],
        start=1,
    )
]


@pytest.fixture
def cli_workspace(tmp_path: Path, hashing_embedder: HashingEmbedder) -> Iterator[Workspace]:
    """A Workspace for CLI tests: a folder store (it must outlive one invocation), a scripted LM."""
    workspace = Workspace(
        load_settings(store=str(tmp_path / "cli-store")),
        lm=ScriptedLM(_cli_script),
        embedder=hashing_embedder,
    )
    yield workspace
    workspace.close()


@pytest.fixture
def invoke(cli_workspace: Workspace):
    """Run the CLI with the test Workspace injected: ``invoke("persona", "show", "alice")``."""
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(cli.cli, list(args), obj=cli_workspace, catch_exceptions=False)

    return run


@pytest.fixture
def history_file(tmp_path: Path) -> Path:
    """CLI_HISTORY as a JSON Lines file."""
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in CLI_HISTORY), encoding="utf-8")
    return path


@pytest.fixture
def compiled_run(invoke, history_file: Path) -> str:
    """Ingest CLI_HISTORY and compile alice once; returns the trace run id."""
    assert invoke("ingest", str(history_file)).exit_code == 0
    result = invoke("compile", "alice", "--labels", "politics,sports", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["run_id"]


@pytest.fixture
def make_ws(tmp_path: Path, hashing_embedder: HashingEmbedder):
    """Build Workspaces on a ScriptedLM: ``make_ws(script)``; an in-memory store, closed after the test."""
    built = []

    def build(script):
        ws = Workspace(Settings(home=tmp_path / "home", store=":memory:"), lm=ScriptedLM(script), embedder=hashing_embedder)
        built.append(ws)
        return ws

    yield build
    for ws in built:
        ws.close()
