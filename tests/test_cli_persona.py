"""`persona show/history/diff/rollback` after a compile, and their errors."""

from __future__ import annotations

import json
import shlex

import pytest
from conftest import CLI_LM_FIELDS

from personaagent.errors import command_hint


def test_show_current_and_older_versions(invoke, compiled_run: str) -> None:
    current = invoke("persona", "show", "alice")
    assert current.exit_code == 0, current.output
    assert "alice v2 (alignment" in current.stderr
    seed = invoke("persona", "show", "alice", "--version", "1")
    assert "What is known about the user: " + CLI_LM_FIELDS["profile"] in seed.stdout
    # The edit replaced the learned lines; the seed's computed facts stay after its opening line.
    facts = [line for line in seed.stdout.splitlines() if line.startswith("Your answers to 5 past items: ")]
    assert current.stdout.strip().splitlines() == [CLI_LM_FIELDS["new_persona"], *facts] and facts


def test_show_and_history_json(invoke, compiled_run: str) -> None:
    record = json.loads(invoke("persona", "show", "alice", "--json").stdout)
    assert record["version"] == 2 and record["parent_version"] == 1
    assert record["provenance"]["source"] == "alignment" and record["provenance"]["run_id"] == compiled_run
    history = json.loads(invoke("persona", "history", "alice", "--json").stdout)
    assert [p["version"] for p in history] == [1, 2]


def test_diff_shows_removed_and_added_lines(invoke, compiled_run: str) -> None:
    result = invoke("persona", "diff", "alice", "1", "2")
    assert result.exit_code == 0, result.output
    assert "+" + CLI_LM_FIELDS["new_persona"] in result.stdout
    assert "-You are a personal assistant. You answer the way this user would" in result.stdout
    assert "identical" in invoke("persona", "diff", "alice", "2", "2").stderr


def test_rollback_adds_a_version_with_the_old_text(invoke, compiled_run: str) -> None:
    result = invoke("persona", "rollback", "alice", "1")
    assert result.exit_code == 0, result.output
    assert "alice: v3 is now current (the text of v1)" in result.stdout
    assert invoke("persona", "show", "alice").stdout == invoke("persona", "show", "alice", "--version", "1").stdout
    rows = invoke("persona", "history", "alice").stdout.splitlines()[2:]
    assert [row.split()[0] for row in rows] == ["v1", "v2", "v3"] and "rollback" in rows[2]


def test_unknown_user_and_version_are_one_line_errors(invoke, compiled_run: str) -> None:
    for args in (
        ("persona", "show", "mallory"),
        ("persona", "history", "mallory"),
        ("persona", "diff", "mallory", "1", "2"),
        ("persona", "rollback", "mallory", "1"),
    ):
        result = invoke(*args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith("Error: no persona for user 'mallory'"), result.stderr
    missing = invoke("persona", "show", "alice", "--version", "9")
    assert missing.exit_code == 1 and "has no persona version 9; versions: [1, 2]" in missing.stderr


def _hinted_command(stderr: str) -> list[str]:
    # The command between the backticks of the hint, split the way a shell would.
    return shlex.split(stderr.split("`")[1])


@pytest.mark.parametrize("user_id", ["Amy Russo", "O'Brien", 'say "hi"; rm -rf ~', "--all", "alice"])
def test_hints_quote_the_user_id_so_a_pasted_command_names_one_user(invoke, user_id: str) -> None:
    for command, options, arguments in (
        (("persona", "show"), (), (user_id,)),
        (("persona", "history"), (), (user_id,)),
        (("persona", "show"), ("--version", "1"), (user_id,)),
        (("persona", "diff"), (), (user_id, "1", "2")),
    ):
        args = (*command, *options, *(["--"] if user_id.startswith("-") else []), *arguments)
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        assert len(result.stderr.splitlines()) == 1, result.stderr
        hinted = _hinted_command(result.stderr)
        assert hinted == ["personaagent", "compile", *(["--"] if user_id.startswith("-") else []), user_id]


def test_the_given_case_reads_as_newcomers_expect(invoke) -> None:
    result = invoke("persona", "show", "Amy Russo")
    assert result.stderr == "Error: no persona for user 'Amy Russo'; compile one with `personaagent compile 'Amy Russo'`\n"


def test_command_hint_quotes_every_argument() -> None:
    assert command_hint("trace", "show", "20240101-abc") == "personaagent trace show 20240101-abc"
    assert command_hint("compile", "O'Brien") == "personaagent compile 'O'\"'\"'Brien'"
    assert shlex.split(command_hint("compile", "a b", "", "$(x)")) == ["personaagent", "compile", "a b", "", "$(x)"]
    assert command_hint("compile", "--all") == "personaagent compile -- --all"  # a user, not the option


def test_a_hinted_command_runs_for_the_one_user_named(invoke, history_file) -> None:
    # The hint's words, given back to the CLI, reach the user: compile of "--all" is one user id.
    hinted = _hinted_command(invoke("persona", "show", "--", "-x y").stderr)
    assert hinted == ["personaagent", "compile", "--", "-x y"]
    result = invoke(*hinted[1:])
    assert "no memories" in result.stderr and "'-x y'" in result.stderr, result.output
