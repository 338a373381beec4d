"""Issue 11, kind 1: byte-order marks and encodings in the files users give. One reader
(ingest.read_user_text) decodes every such file (interactions, knowledge documents, LaMP files,
the config file): a UTF-8 byte-order mark is ignored; any other encoding is one `Error:` line
naming the file and the fix, and nothing stored is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personaagent.config import load_settings
from personaagent.errors import ConfigError, InvalidRecord
from personaagent.evaluation import read_lamp
from personaagent.ingest import read_interactions

BOM = b"\xef\xbb\xbf"
CSV_TEXT = "user_id,query,response\nu1,Cup final report,sports\nu1,Senate vote story,politics\n"
RECORDS = [
    {"user_id": "u1", "query": "Cup final report", "response": "sports"},
    {"user_id": "u1", "query": "Senate vote story", "response": "politics"},
]
JSONL_TEXT = "".join(json.dumps(r) + "\n" for r in RECORDS)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def stored(cli_workspace) -> list[tuple[str, str]]:
    return sorted((m.interaction.query, m.interaction.response) for m in cli_workspace.episodic.history("u1"))


def test_the_issue_case_a_csv_with_a_byte_order_mark_is_ingested_whole(invoke, cli_workspace, tmp_path):
    path = write(tmp_path, "bom.csv", BOM + CSV_TEXT.encode())
    result = invoke("ingest", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "added 2, duplicates 0, skipped 0 (1 user(s))"
    assert stored(cli_workspace) == [("Cup final report", "sports"), ("Senate vote story", "politics")]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bom.jsonl", JSONL_TEXT),
        ("bom.json", json.dumps(RECORDS)),
        ("bom-lines.json", JSONL_TEXT),
        ("crlf.csv", CSV_TEXT.replace("\n", "\r\n")),
    ],
)
def test_a_byte_order_mark_before_any_format_is_ignored(tmp_path, name, text):
    interactions, skipped = read_interactions(write(tmp_path, name, BOM + text.encode()))
    assert skipped == []
    assert [(i.query, i.response) for i in interactions] == [("Cup final report", "sports"),
                                                             ("Senate vote story", "politics")]


def test_jsonl_files_joined_with_cat_keep_every_record(tmp_path):
    data = BOM + JSONL_TEXT.encode() + BOM + json.dumps({"user_id": "u1", "query": "Third", "response": "x"}).encode()
    interactions, skipped = read_interactions(write(tmp_path, "joined.jsonl", data))
    assert skipped == [] and [i.query for i in interactions][-1] == "Third" and len(interactions) == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (CSV_TEXT.encode("utf-16"), "the file is UTF-16 text, not UTF-8"),  # with its byte-order mark
        (b"\xfe\xff" + CSV_TEXT.encode("utf-16-be"), "the file is UTF-16 text, not UTF-8"),
        (CSV_TEXT.encode("utf-32"), "the file is UTF-32 text, not UTF-8"),
        (CSV_TEXT.encode("utf-16-le"), "the file looks like UTF-16 text without a byte-order mark"),
        (CSV_TEXT.encode("utf-16-be"), "the file looks like UTF-16 text without a byte-order mark"),
        (CSV_TEXT.replace("Senate vote story", "Séance du Sénat").encode("latin-1"),
         "line 3: byte 0xe9 is not UTF-8 (Latin-1 or Windows-1252 text?)"),
    ],
    ids=["utf-16", "utf-16-be", "utf-32", "utf-16-le-no-mark", "utf-16-be-no-mark", "latin-1"],
)
def test_another_encoding_is_one_error_line_and_nothing_stored_is_lost(invoke, cli_workspace, tmp_path, data,
                                                                         message):
    first = write(tmp_path, "first.jsonl", JSONL_TEXT.encode())
    assert invoke("ingest", str(first)).exit_code == 0
    path = write(tmp_path, "other.csv", data)
    result = invoke("ingest", str(path))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {path}: {message}; save it as UTF-8 (a spreadsheet's \"CSV UTF-8\"; an " \
                            "editor's \"UTF-8\" encoding) and try again\n"
    assert stored(cli_workspace) == [("Cup final report", "sports"), ("Senate vote story", "politics")]


def test_knowledge_documents_drop_the_mark_and_refuse_other_encodings(invoke, cli_workspace, tmp_path):
    document = write(tmp_path, "notes.txt", BOM + "Alice supports the home team.".encode())
    assert invoke("knowledge", "add", str(document), "--user", "u1").exit_code == 0
    [hit] = cli_workspace.knowledge.search("u1", "home team", k=1)
    assert hit.text == "Alice supports the home team."
    latin = write(tmp_path, "latin.txt", "Équipe".encode("latin-1"))
    result = invoke("knowledge", "add", str(latin), "--user", "u1")
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {latin}: line 1: byte 0xc9 is not UTF-8")


def test_lamp_files_with_a_byte_order_mark_are_read(tmp_path):
    questions = [{"id": "q1", "input": "Which category does this article relate to among the following categories? "
                  "Just answer with the category name without further explanation. categories: [sports, politics] "
                  "article: Cup final report", "profile": [{"id": "p1", "text": "Senate vote", "category": "politics"}]}]
    outputs = {"task": "LaMP_2", "golds": [{"id": "q1", "output": "sports"}]}
    data = read_lamp(write(tmp_path, "q.json", BOM + json.dumps(questions).encode()),
                     write(tmp_path, "o.json", BOM + json.dumps(outputs).encode()))
    assert [e.query for e in data.examples] == ["Cup final report"]
    with pytest.raises(InvalidRecord, match="UTF-16"):
        read_lamp(write(tmp_path, "q16.json", json.dumps(questions).encode("utf-16")), tmp_path / "o.json")


def test_a_config_file_with_a_byte_order_mark_is_read(_isolated_home):
    # Windows Notepad saves UTF-8 with the mark; TOML parsers reject it ("Invalid statement").
    (_isolated_home / "config.toml").write_bytes(BOM + b'store = ":memory:"\nlm_max_tokens = 99\n')
    settings = load_settings()
    assert (settings.store, settings.lm_max_tokens) == (":memory:", 99)


@pytest.mark.parametrize(
    ("data", "message"),
    [('store = ":memory:"\n'.encode("utf-16"), "the file is UTF-16 text, not UTF-8"),
     (b"store = \n", "not valid TOML")],
)
def test_a_config_file_that_cannot_be_read_is_one_config_error_naming_it(_isolated_home, data, message):
    path = _isolated_home / "config.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value).startswith(f"{path}: {message}") and "\n" not in str(raised.value)
