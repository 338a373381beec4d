"""`compile` and `ask` on a DummyLM: summaries, JSON output, unknown users, bad flag combinations."""

from __future__ import annotations

import json
from pathlib import Path


def test_compile_prints_a_summary_and_saves_a_new_persona_version(invoke, history_file: Path) -> None:
    invoke("ingest", str(history_file))
    result = invoke("compile", "alice", "--labels", "politics,sports")
    assert result.exit_code == 0, result.output
    header, _, row = result.stdout.splitlines()[:3]
    assert header.split()[:4] == ["user", "status", "score", "persona"]
    assert row.split()[:2] == ["alice", "edited"] and "v2" in row
    assert "Trace run " in result.stdout and "personaagent trace show " in result.stdout
    history = invoke("persona", "history", "alice")
    assert [line.split()[0] for line in history.stdout.splitlines()[2:]] == ["v1", "v2"]
    assert "alignment" in history.stdout


def test_compile_json_and_resume(invoke, history_file: Path) -> None:
    invoke("ingest", str(history_file))
    first = json.loads(invoke("compile", "--all", "--labels", "politics,sports", "--json").stdout)
    [user] = first["users"]
    assert user["user_id"] == "alice" and user["status"] == "edited" and user["run_id"] == first["run_id"]
    assert user["usage"]["calls"] > 0
    assert Path(first["trace_dir"]).is_dir()
    # The same job again skips alice (her record is the earlier run's); --no-resume redoes her.
    again = json.loads(invoke("compile", "alice", "--labels", "politics,sports", "--json").stdout)
    assert again["users"][0]["run_id"] == first["run_id"]
    redo = json.loads(invoke("compile", "alice", "--labels", "politics,sports", "--no-resume", "--json").stdout)
    assert redo["users"][0]["run_id"] == redo["run_id"] != first["run_id"]


def test_compile_unknown_user_is_one_line_error(invoke, history_file: Path) -> None:
    invoke("ingest", str(history_file))
    result = invoke("compile", "alice", "mallory")
    assert result.exit_code == 1
    assert result.stderr == "Error: no memories for user 'mallory'; ingest some with `personaagent ingest`\n"


def test_compile_needs_users_or_all(invoke) -> None:
    assert "Give USER_IDs or --all" in invoke("compile").stderr
    assert invoke("compile", "alice", "--all").exit_code == 2
    empty = invoke("compile", "--all")
    assert empty.exit_code == 1 and "no users with memories" in empty.stderr


def test_answer_format_flags_are_exclusive_and_validated(invoke, history_file: Path) -> None:
    invoke("ingest", str(history_file))
    both = invoke("compile", "alice", "--task", "news", "--labels", "a,b")
    assert both.exit_code == 2 and "Use just one of --task, --labels or --rating" in both.stderr
    one_label = invoke("ask", "alice", "q", "--labels", "only")
    assert one_label.exit_code == 1 and "at least two labels" in one_label.stderr
    bad_range = invoke("ask", "alice", "q", "--rating", "5", "1")
    assert bad_range.exit_code == 1 and "the lowest rating (5) must be below the highest (1)" in bad_range.stderr


def test_ask_answers_with_persona_and_memories(invoke, history_file: Path) -> None:
    invoke("ingest", str(history_file))
    result = invoke("ask", "alice", "Senate vote tomorrow", "--labels", "politics,sports")
    assert result.exit_code == 0, result.output
    assert result.stdout == "sports\n"
    assert "persona: none" in result.stderr and "tools used: none" in result.stderr
    assert "retrieved 5 memories" in result.stderr and "Senate vote story number 1 => politics" in result.stderr


def test_ask_json_after_compile(invoke, compiled_run: str) -> None:
    answer = json.loads(invoke("ask", "alice", "Election night", "--labels", "politics,sports", "--json").stdout)
    assert answer["answer"] == "politics" and answer["persona_version"] == 2  # the compiled persona steers
    assert answer["used_tools"] == []
    assert len(answer["retrieved"]) == 5 and {"memory_id", "query", "response", "score"} <= set(answer["retrieved"][0])


def test_ask_unknown_user(invoke) -> None:
    result = invoke("ask", "mallory", "hello")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no memories or persona for user 'mallory'")
