"""The user interaction-file reader behind `personaagent ingest`, on tiny hand-written files."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from personaagent.errors import InvalidRecord
from personaagent.ingest import MAX_RECORD_CHARS, read_interactions


def test_read_jsonl_keeps_valid_lines_and_reports_bad_ones(tmp_path: Path) -> None:
    lines = [
        json.dumps({"user_id": "u1", "query": "q1", "response": "r1", "timestamp": "2024-01-02T03:04:05Z"}),
        "{bad json",
        json.dumps({"user_id": "u1", "response": "r"}),
        json.dumps({"user_id": 5, "query": "q", "response": "r"}),
        json.dumps({"user_id": "u1", "query": "x" * (MAX_RECORD_CHARS + 1), "response": "r"}),
        "",
        json.dumps({"user_id": "u2", "query": "q2", "response": 4.5, "timestamp": "2024-01-02", "source": "app"}),
        json.dumps({"user_id": "u2", "query": "q3", "response": "r", "tags": ["a", "b"]}),
        json.dumps({"user_id": "u2", "query": "q4", "response": "r", "timestamp": "yesterday"}),
        json.dumps(["not", "an", "object"]),
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    interactions, skipped = read_interactions(path)

    assert [(i.user_id, i.query, i.response) for i in interactions] == [("u1", "q1", "r1"), ("u2", "q2", "4.5")]
    assert interactions[1].metadata == {"source": "app"}
    # A naive timestamp is taken as UTC.
    assert interactions[1].timestamp == datetime(2024, 1, 2, tzinfo=timezone.utc)
    assert [s.line for s in skipped] == [2, 3, 4, 5, 8, 9, 10]
    reasons = {s.line: s.reason for s in skipped}
    assert reasons[2].startswith("invalid JSON")
    assert reasons[3] == "missing field(s) query"
    assert "user_id" in reasons[4] and "string" in reasons[4]
    assert "limit is 100000" in reasons[5]
    assert "'tags'" in reasons[8]
    assert "timestamp" in reasons[9]
    assert "expected a JSON object" in reasons[10]
    assert str(skipped[0]).startswith("line 2: invalid JSON")


def test_read_json_list_reports_item_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(
        '[\n  {"user_id": "u", "query": "a", "response": "x"},\n'
        '  {"user_id": "u", "query": "", "response": "x"},\n'
        '  {"user_id": "u",\n   "query": "b", "response": "y", "metadata": {"k": 1}}\n]\n',
        encoding="utf-8",
    )
    interactions, skipped = read_interactions(path)
    assert [i.query for i in interactions] == ["a", "b"]
    assert interactions[1].metadata == {"k": 1}
    assert [s.line for s in skipped] == [3]


def test_read_json_list_on_one_line_reports_item_elements(tmp_path: Path) -> None:
    # Every element of a one-line list starts on line 1: the element number is what tells them apart.
    path = tmp_path / "in.json"
    records = [{"user_id": "u", "query": "a", "response": "x"}, {"user_id": "u"}, "text", {"query": "q", "response": "r"},
               {"user_id": "u", "query": "x" * (MAX_RECORD_CHARS + 1), "response": "r"}]
    path.write_text(json.dumps(records), encoding="utf-8")
    interactions, skipped = read_interactions(path)
    assert [i.query for i in interactions] == ["a"]
    assert [(s.element, s.line) for s in skipped] == [(2, 1), (3, 1), (4, 1), (5, 1)]
    assert [str(s) for s in skipped][:3] == [
        "element 2 (line 1): missing field(s) query, response",
        "element 3 (line 1): expected a JSON object, got str",
        "element 4 (line 1): missing field(s) user_id",
    ]
    assert str(skipped[3]).startswith("element 5 (line 1): record is ")


def test_read_json_list_syntax_error_fails_the_file(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('[\n {"user_id": "u", "query": "a", "response": "x"},\n {oops}\n]', encoding="utf-8")
    with pytest.raises(InvalidRecord, match=r"element 2 \(line 3, column 3\): invalid JSON"):
        read_interactions(path)
    path.write_text('[{"user_id": "u", "query": "a", "response": "x"}, {"user_id": "u", "query": "b"', encoding="utf-8")
    with pytest.raises(InvalidRecord, match=r"element 2 \(line 1, column 80\): invalid JSON"):
        read_interactions(path)
    path.write_text('[{"user_id": "u", "query": "a", "response": "x"} {"user_id": "u"}]', encoding="utf-8")
    with pytest.raises(InvalidRecord, match=r"after element 1 \(line 1\): expected ',' or '\]'"):
        read_interactions(path)


def test_a_file_without_records_reads_as_nothing_skipped(tmp_path: Path) -> None:
    files = [("a.jsonl", ""), ("b.json", "[]"), ("c.json", ""), ("d.csv", ""), ("e.csv", "user_id,query,response\n")]
    for name, content in files:
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        assert read_interactions(path) == ([], []), name


def test_read_csv(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        "user_id,query,response,timestamp,mood\n"
        "u1,hello,hi,1700000000,happy\n"
        'u1,"two\nlines",ok,,\n'
        "u1,too,many,fields,here,extra\n"
        "u2,q,r,not-a-time,sad\n"
        ",q,r,,\n"
        f"u3,{'y' * (MAX_RECORD_CHARS + 5)},r,,\n"
        "u3,last,r,2024-05-01T00:00:00,\n",
        encoding="utf-8",
    )
    interactions, skipped = read_interactions(path)
    assert [i.query for i in interactions] == ["hello", "two\nlines", "last"]
    assert interactions[0].metadata == {"mood": "happy"}
    assert interactions[0].timestamp == datetime.fromtimestamp(1700000000, tz=timezone.utc)
    assert interactions[1].timestamp is None and interactions[1].metadata == {"mood": None}
    # The quoted two-line record occupies lines 3-4, so the next record starts on line 5.
    assert [s.line for s in skipped] == [5, 6, 7, 8]
    assert "6 fields" in skipped[0].reason


def test_read_interactions_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidRecord, match="unsupported file type"):
        read_interactions(tmp_path / "in.txt")
    with pytest.raises(InvalidRecord, match="missing.jsonl"):
        read_interactions(tmp_path / "missing.jsonl")
    path = tmp_path / "in.csv"
    path.write_text("user,query,response\nu,q,r\n", encoding="utf-8")
    with pytest.raises(InvalidRecord, match="lacks column"):
        read_interactions(path)
