"""Bad input end to end: a file with malformed records goes through read_interactions into
episodic memory with every valid record kept and every bad one reported at its line; unknown
users and tasks, a store folder another process holds, and a store built with another embedding
model each fail with a one-line error that names the place.

(read_interactions' per-field rules are unit-tested in tests/test_ingest.py.)
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personaagent.agent import PersonaAgent
from personaagent.config import Settings
from personaagent.errors import EmbeddingMismatch, StoreLocked, UnknownTask, UnknownUser
from personaagent.ingest import MAX_RECORD_CHARS, read_interactions
from personaagent.evaluation.tasks import load_task
from personaagent.memory.episodic import EpisodicMemory
from personaagent.memory.store import EdgeStore
from personaagent.runtime.embedder import HashingEmbedder
from personaagent.workspace import Workspace

EMBEDDER = HashingEmbedder(64)
USER_IDS = ("alice", "*", "ユーザー🙂", " padded ")
# Any text, including characters that end a line for str.splitlines() but not for JSON or CSV
# (U+2028, U+0085, form feed...), which once cut valid records in two.
TEXT = st.text(
    alphabet=st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from("\u2028\u2029\x85\x0c\x1c\n\r\"',")),
    min_size=1,
    max_size=40,
).filter(str.strip)

#: Lines no reader may keep, with the reason they must be reported for.
BAD_JSONL = {
    "bad json": "{not json",
    "truncated": '{"user_id": "alice", "query": "q", "resp',
    "missing query": json.dumps({"user_id": "alice", "response": "r"}),
    "user id not a string": json.dumps({"user_id": 7, "query": "q", "response": "r"}),
    "empty user id": json.dumps({"user_id": "", "query": "q", "response": "r"}),
    "control character in user id": json.dumps({"user_id": "a\u0000b", "query": "q", "response": "r"}),
    "blank query": json.dumps({"user_id": "alice", "query": "   ", "response": "r"}),
    "bad timestamp": json.dumps({"user_id": "alice", "query": "q", "response": "r", "timestamp": "soon"}),
    "nested metadata": json.dumps({"user_id": "alice", "query": "q", "response": "r", "extra": {"a": 1}}),
    "not an object": json.dumps(["alice", "q", "r"]),
    "huge": json.dumps({"user_id": "alice", "query": "x" * (MAX_RECORD_CHARS + 1), "response": "r"}),
}


@pytest.fixture(scope="module")
def episodic():
    store = EdgeStore(":memory:", embedder_name=EMBEDDER.name, dim=EMBEDDER.dim)
    yield EpisodicMemory(store, EMBEDDER)
    store.close()


def valid_record():
    return st.fixed_dictionaries(
        {"user_id": st.sampled_from(USER_IDS), "query": TEXT, "response": st.one_of(TEXT, st.integers(1, 5))}
    )


def counts(memory: EpisodicMemory) -> dict[str, int]:
    return {user: memory.count(user) for user in USER_IDS}


def ingest_and_check(memory: EpisodicMemory, path: Path, records: list, bad_lines: list[int]) -> None:
    """Read ``path``, store what it holds, and check nothing valid was lost or duplicated."""
    interactions, skipped = read_interactions(path)
    valid = [r for r in records if isinstance(r, dict)]
    assert [(i.user_id, i.query, i.response) for i in interactions] == [
        (r["user_id"], r["query"], str(r["response"])) for r in valid
    ]
    assert [s.line for s in skipped] == bad_lines
    before = counts(memory)
    report = memory.add(interactions)
    distinct = {i.interaction_id: i for i in interactions}
    assert report.added + report.duplicates == len(interactions)
    after = counts(memory)
    assert sum(after.values()) - sum(before.values()) == report.added
    for interaction in distinct.values():  # every valid record is stored and can be read back
        assert memory.get(interaction.user_id, interaction.interaction_id).interaction == interaction
    assert memory.add(interactions).added == 0  # ingesting the same file again adds nothing
    assert counts(memory) == after


HYPOTHESIS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYPOTHESIS
@given(records=st.lists(st.one_of(valid_record(), st.sampled_from(sorted(BAD_JSONL))), min_size=1, max_size=12),
       crlf=st.booleans())
def test_jsonl_file_to_memory_keeps_every_valid_record(episodic, tmp_path_factory, records, crlf):
    lines = [BAD_JSONL[r] if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path = tmp_path_factory.mktemp("jsonl") / "history.jsonl"
    path.write_bytes(("\r\n" if crlf else "\n").join(lines).encode("utf-8"))
    bad = [number for number, r in enumerate(records, start=1) if isinstance(r, str)]
    ingest_and_check(episodic, path, records, bad)


@HYPOTHESIS
@given(records=st.lists(st.one_of(valid_record(), st.sampled_from(["short row", "empty user id", "huge"])),
                        min_size=1, max_size=12))
def test_csv_file_to_memory_keeps_every_valid_record(episodic, tmp_path_factory, records):
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["user_id", "query", "response"])
    bad, line = [], 2
    for record in records:
        if record == "short row":
            row = ["alice", "q"]
        elif record == "empty user id":
            row = ["", "q", "r"]
        elif record == "huge":
            row = ["alice", "x" * (MAX_RECORD_CHARS + 1), "r"]
        else:
            row = [record["user_id"], record["query"], record["response"]]
        if isinstance(record, str):
            bad.append(line)
        before = buffer.tell()
        writer.writerow(row)
        # A quoted field may span lines (ended by \r\n, \r or \n, as the csv module counts
        # them); the next record starts after all of them.
        line += len(re.findall(r"\r\n|\r|\n", buffer.getvalue()[before:]))
    path = tmp_path_factory.mktemp("csv") / "history.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    ingest_and_check(episodic, path, records, bad)


# --- unknown users and tasks --------------------------------------------------------------------


def test_unknown_user_and_task_errors_name_what_is_missing_and_what_to_do(tmp_path):
    with Workspace(Settings(home=tmp_path, store=":memory:"), embedder=EMBEDDER) as ws:
        with pytest.raises(UnknownUser) as load:
            PersonaAgent.for_user("nobody", workspace=ws)
        with pytest.raises(UnknownUser) as memory:
            ws.episodic.require_user("nobody")
        with pytest.raises(UnknownUser) as persona:
            ws.personas.get("nobody", 1)
    with pytest.raises(UnknownTask) as task:
        load_task("no-such-task")
    for error, hint in [(load, "ingest"), (memory, "ingest"), (persona, "compile"), (task, "news")]:
        message = str(error.value)
        assert "\n" not in message and hint in message
        assert "nobody" in message or "no-such-task" in message
        assert not message.startswith(("'", '"'))  # not KeyError's quoted repr


# --- the store folder: held by another process, or built with another embedder ------------------

HOLDER = """
    import sys
    from personaagent.memory.store import EdgeStore
    store = EdgeStore(sys.argv[1], embedder_name="hashing-64", dim=64)
    print("ready", flush=True)
    sys.stdin.readline()
    store.close()
"""


def test_a_store_folder_held_by_a_live_process_is_store_locked(tmp_path):
    folder = tmp_path / "store"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with Workspace(Settings(home=tmp_path / "home", store=str(folder)), embedder=EMBEDDER) as ws:
            with pytest.raises(StoreLocked) as locked:
                ws.episodic.count("alice")
    finally:
        holder.communicate("\n", timeout=30)
    message = str(locked.value)
    assert "\n" not in message and str(folder) in message and "another process" in message


def test_a_store_built_with_another_embedding_model_is_refused(tmp_path):
    folder = tmp_path / "store"
    with Workspace(Settings(home=tmp_path / "home", store=str(folder)), embedder=EMBEDDER) as ws:
        ws.episodic.add([])
    with Workspace(Settings(home=tmp_path / "home", store=str(folder)), embedder=HashingEmbedder(32)) as ws:
        with pytest.raises(EmbeddingMismatch) as mismatch:
            ws.episodic.count("alice")
    message = str(mismatch.value)
    assert "\n" not in message and str(folder) in message
    assert "64" in message and "32" in message  # both embedders' sizes
