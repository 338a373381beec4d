"""`persona show/history/diff/rollback` after a compile, and their errors."""

from __future__ import annotations

import json

from conftest import CLI_LM_FIELDS


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
