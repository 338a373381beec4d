"""Every command has help (-h and --help) with an Example block; python -m personaagent and the
checkout's ``python cli.py`` launcher both run the one CLI module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from personaagent import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = _commands(cli.cli)


def test_every_expected_command_exists() -> None:
    expected = {
        ("ingest",), ("knowledge", "add"), ("compile",), ("ask",), ("demo",),
        ("persona", "show"), ("persona", "history"), ("persona", "diff"), ("persona", "rollback"),
        ("trace", "list"), ("trace", "show"), ("trace", "report"),
    }
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "personaagent")
def test_help(command: tuple[str, ...], flag: str) -> None:
    result = CliRunner().invoke(cli.cli, [*command, flag])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "Example:" in result.output


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "personaagent", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "compile" in result.stdout and "trace" in result.stdout


def test_the_checkouts_cli_py_launches_the_package_cli() -> None:
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "cli.py", "--help"], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: personaagent [OPTIONS] COMMAND")
    # Run from the checkout's root, the launcher's personaagent must still find its subpackages.
    probe = "import cli, personaagent.cli as c, personaagent.signatures; print(cli.cli is c.cli)"
    same = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120)
    assert same.stdout.strip() == "True", same.stderr


def test_global_options_reach_the_settings(tmp_path) -> None:
    home = tmp_path / "elsewhere"
    result = CliRunner().invoke(cli.cli, ["--home", str(home), "--store", str(tmp_path / "s"), "trace", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "[]"
    bad = CliRunner().invoke(cli.cli, ["--lm", "gpt4", "trace", "list"])
    assert bad.exit_code == 1
    assert bad.stderr.startswith("Error: invalid settings: lm: ") and "Traceback" not in bad.output
