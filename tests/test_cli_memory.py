"""`ingest` and `knowledge add`: valid records kept, bad ones reported, file errors in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CLI_HISTORY


def test_ingest_counts_added_and_duplicates(invoke, history_file: Path, cli_workspace) -> None:
    first = invoke("ingest", str(history_file))
    assert first.exit_code == 0, first.output
    assert "added 5, duplicates 0, skipped 0 (1 user(s))" in first.stdout
    again = invoke("ingest", str(history_file))
    assert "added 0, duplicates 5, skipped 0" in again.stdout
    assert cli_workspace.episodic.count("alice") == 5


def test_ingest_keeps_valid_lines_and_reports_bad_ones(invoke, tmp_path: Path, cli_workspace) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        json.dumps(CLI_HISTORY[0]) + "\n"
        + "{not json\n"
        + json.dumps({"user_id": "alice", "query": "no response"}) + "\n"
        + json.dumps(CLI_HISTORY[1]) + "\n",
        encoding="utf-8",
    )
    result = invoke("ingest", str(path))
    assert result.exit_code == 0  # something was ingested: the bad lines are warnings
    assert "added 2, duplicates 0, skipped 2" in result.stdout
    assert "line 2: invalid JSON" in result.stderr
    assert "line 3: missing field(s) response" in result.stderr
    assert cli_workspace.episodic.count("alice") == 2


def test_ingest_with_only_bad_lines_fails(invoke, tmp_path: Path, cli_workspace) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("{oops\n[1, 2]\n", encoding="utf-8")
    result = invoke("ingest", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-3:] == [
        f"{path}: line 1: invalid JSON: Expecting property name enclosed in double quotes",
        f"{path}: line 2: expected a JSON object, got list",
        f"Error: {path} holds no valid record (2 skipped, see above), so nothing was added; each record needs "
        "user_id (or --user), query and response",
    ]
    assert cli_workspace.episodic.user_ids() == []


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.jsonl", ""), ("blank.jsonl", "\n  \n"), ("empty.json", "[ ]\n"),
     ("header-only.csv", "user_id,query,response\n")],
)
def test_ingest_of_a_file_with_no_records_fails_like_one_with_only_bad_ones(
    invoke, tmp_path: Path, cli_workspace, name: str, content: str
) -> None:
    # Both add nothing, so both exit 1 (a script that ingests an empty export must notice).
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    result = invoke("ingest", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: {path} holds no records, so nothing was added; each record needs user_id (or --user), query and "
        "response"
    ]
    assert cli_workspace.episodic.user_ids() == []


def test_ingesting_a_file_again_adds_nothing_and_succeeds(invoke, history_file: Path) -> None:
    assert invoke("ingest", str(history_file)).exit_code == 0
    again = invoke("ingest", str(history_file))
    assert again.exit_code == 0  # every record is valid, only already stored
    assert again.stdout.strip() == "added 0, duplicates 5, skipped 0 (1 user(s))"


def test_ingest_of_a_one_line_json_list_names_each_bad_element(invoke, tmp_path: Path, cli_workspace) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps([CLI_HISTORY[0], {"user_id": "alice"}, 3, CLI_HISTORY[1]]), encoding="utf-8")
    result = invoke("ingest", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "added 2, duplicates 0, skipped 2 (1 user(s))"
    assert result.stderr.splitlines()[-2:] == [
        f"{path}: element 2 (line 1): missing field(s) query, response",
        f"{path}: element 3 (line 1): expected a JSON object, got int",
    ]
    assert cli_workspace.episodic.count("alice") == 2


def test_ingest_user_option_fills_in_missing_user_ids(invoke, tmp_path: Path, cli_workspace) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("query,response\nRate: Heat (1995),4.5\nRate: Ronin (1998),4\n", encoding="utf-8")
    result = invoke("ingest", str(path), "--user", "bob")
    assert result.exit_code == 0, result.output
    assert cli_workspace.episodic.count("bob") == 2


def test_ingest_user_option_keeps_the_files_own_user_ids(invoke, history_file: Path, cli_workspace) -> None:
    result = invoke("ingest", str(history_file), "--user", "bob")
    assert result.exit_code == 0, result.output
    assert cli_workspace.episodic.count("alice") == 5
    assert cli_workspace.episodic.count("bob") == 0


def test_csv_without_user_column_needs_the_user_option(invoke, tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("query,response\nRate: Heat (1995),4.5\n", encoding="utf-8")
    result = invoke("ingest", str(path))
    assert result.exit_code == 1
    assert "CSV header lacks column(s) user_id" in result.stderr


def test_ingest_csv(invoke, tmp_path: Path, cli_workspace) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(
        "user_id,query,response\ncarol,Rate: Heat (1995),4.5\ncarol,Rate: Ronin (1998),4\n", encoding="utf-8"
    )
    result = invoke("ingest", str(path))
    assert result.exit_code == 0, result.output
    assert cli_workspace.episodic.count("carol") == 2


def test_ingest_missing_file_is_one_line_error(invoke, tmp_path: Path) -> None:
    result = invoke("ingest", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "nope.jsonl" in result.stderr
    assert "Traceback" not in result.output


def test_ingest_broken_json_list_is_one_line_error(invoke, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"user_id": "a", "query": "q", "response": "r"},\n {"user_id": ', encoding="utf-8")
    result = invoke("ingest", str(path))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {path}: element 2 (line 2, column 14): invalid JSON: Expecting value"
    )


def test_ingest_unsupported_extension(invoke, tmp_path: Path) -> None:
    path = tmp_path / "history.txt"
    path.write_text("hello", encoding="utf-8")
    result = invoke("ingest", str(path))
    assert result.exit_code == 1
    assert "unsupported file type" in result.stderr


def test_knowledge_add(invoke, tmp_path: Path, cli_workspace) -> None:
    (tmp_path / "a.txt").write_text("Alice reads mostly about elections.", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Alice follows the Senate.", encoding="utf-8")
    result = invoke("knowledge", "add", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--user", "alice")
    assert result.exit_code == 0, result.output
    assert "added 2, already stored 0" in result.stdout
    assert cli_workspace.knowledge.count("alice") == 2
    assert "added 0, already stored 1" in invoke("knowledge", "add", str(tmp_path / "a.txt"), "--user", "alice").stdout


def test_knowledge_add_needs_user(invoke, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("text", encoding="utf-8")
    result = invoke("knowledge", "add", str(tmp_path / "a.txt"))
    assert result.exit_code == 2
    assert "--user" in result.stderr
