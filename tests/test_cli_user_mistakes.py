"""User mistakes found by trying the CLI as a newcomer: each is one `Error:` line, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from dspy.utils.exceptions import LMAuthError, LMServerError

from personaagent import cli
from personaagent.testing import ScriptedLM


def _run(*args: str, obj=None):
    return CliRunner().invoke(cli.cli, list(args), obj=obj)


@pytest.mark.parametrize(
    "fault",
    [LMAuthError("401 Incorrect API key provided", model="openai/x"), LMServerError("Connection error.", model="openai/x")],
    ids=["wrong-key", "server-down"],
)
def test_a_model_that_cannot_be_used_is_one_error_line(cli_workspace, history_file: Path, fault):
    assert _run("ingest", str(history_file), obj=cli_workspace).exit_code == 0

    def script(request):
        raise fault

    cli_workspace.__dict__["lm"] = ScriptedLM(script)  # the LM the command will call
    result = _run("ask", "alice", "Senate vote", "--labels", "politics,sports", obj=cli_workspace)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: the LM call failed ({type(fault).__name__}: ")
    assert "PERSONAAGENT_LM_API_KEY" in line


def test_an_empty_knowledge_document_is_one_error_line(cli_workspace, tmp_path: Path):
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n", encoding="utf-8")
    result = _run("knowledge", "add", str(empty), "--user", "u1", obj=cli_workspace)
    assert result.exit_code == 1 and result.stderr.startswith("Error: ") and "is empty" in result.stderr
    assert "Traceback" not in result.output


def test_a_store_that_is_a_file_is_one_error_line(tmp_path: Path, history_file: Path):
    not_a_folder = tmp_path / "store.jsonl"
    not_a_folder.write_text("{}\n", encoding="utf-8")
    result = _run("--home", str(tmp_path / "home"), "--store", str(not_a_folder), "--embedder", "local",
                  "ingest", str(history_file))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: the store {not_a_folder} is a file, not a folder; point --store at a folder"
    assert not_a_folder.read_text(encoding="utf-8") == "{}\n"  # untouched


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_json_nested_too_deeply_is_reported_not_a_crash(cli_workspace, tmp_path: Path, suffix: str):
    deep = tmp_path / f"deep{suffix}"
    deep.write_text("[" * 5_000 + "]" * 5_000 + "\n", encoding="utf-8")  # deeper than Python recurses
    result = _run("ingest", str(deep), obj=cli_workspace)
    assert result.exit_code == 1 and "nested too deeply" in result.stderr
    assert "Traceback" not in result.output


def test_the_config_file_of_the_home_given_on_the_command_line_is_read(tmp_path: Path, monkeypatch):
    home = tmp_path / "elsewhere"
    home.mkdir()
    (home / "config.toml").write_text('lm = "not-a-model"\n', encoding="utf-8")
    result = _run("--home", str(home), "--store", ":memory:", "ask", "u1", "hi")
    assert result.exit_code == 1 and "not-a-model" in result.stderr  # the file was read


def test_models_install_takes_the_names_models_list_prints(monkeypatch):
    from personaagent.runtime import models

    called = []
    monkeypatch.setattr(cli, "resolve_model", lambda name: called.append(name) or Path(f"/cache/{name}.gguf"))
    monkeypatch.setattr(cli, "model_status", lambda name: "ready")
    result = _run("models", "install", "local/qwen2.5-coder-0.5b-instruct")
    assert result.exit_code == 0 and called == ["qwen2.5-coder-0.5b-instruct"]
    assert result.stderr == ""  # nothing to join: no progress line
    assert "qwen2.5-coder-0.5b-instruct" in models.LOCAL_MODELS
