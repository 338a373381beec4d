"""Crash safety: a multi-user compile or an ingest SIGKILLed at random points loses nothing.

A child process (tests/reliability_driver.py) runs the real code on a folder store and files;
the parent kills it at seeded random moments, checks every file and the store, and restarts it.
After a kill: every persona, profile, trace and manifest line is complete and readable, no
memory is duplicated, the store's folder lock does not block the restart, and the restarted
run finishes every user without redoing the ones the manifest already holds.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from personaagent.config import Settings
from personaagent.memory.semantic import SemanticMemory
from personaagent.memory.store import EdgeStore
from personaagent.memory.episodic import EpisodicMemory
from personaagent.optimizers import compile_users
from personaagent.optimizers.many_users import finished_users, run_key
from personaagent.persona import PersonaBook
from personaagent.records import Persona, PersonaProvenance, UserCompileRecord
from personaagent.testing import ScriptedLM
from personaagent.traces import TraceReader
from personaagent.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
import reliability_driver as driver  # noqa: E402  (the child's own module: same users and histories)

DRIVER = Path(__file__).parent / "reliability_driver.py"
NUM_USERS = 12
#: Seconds per fake LM call: 12 users x ~11 calls over 2 threads takes ~2 s, time to be killed in.
LM_SLEEP = 0.03
USERS = driver.user_ids(NUM_USERS)


def start(mode: str, root: Path, sleep: float = LM_SLEEP) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, str(DRIVER), mode, str(root / "home"), str(root / "store"), str(NUM_USERS), str(sleep),
         str(root / "done.jsonl")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    # Wait for the workspace to be open, so the kill lands in the work and not in `import dspy`.
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    return child


def run_to_end(mode: str, root: Path) -> None:
    child = start(mode, root)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.strip() == "finished"


def kill_after(child: subprocess.Popen, seconds: float) -> None:
    try:
        child.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)


def done_by_last_run(root: Path) -> list[str]:
    path = root / "done.jsonl"
    users = [json.loads(line)["user_id"] for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    path.unlink(missing_ok=True)
    return users


def manifest(root: Path) -> dict[str, UserCompileRecord]:
    manifests = list((root / "home" / "runs").glob("*/finished.jsonl"))
    assert len(manifests) <= 1  # one job, one configuration: one manifest
    return finished_users(manifests[0]) if manifests else {}


def memory_counts(root: Path) -> dict[str, int]:
    # Opening the folder right after a SIGKILL also proves the dead process's lock is gone.
    with EdgeStore(root / "store", embedder_name=driver.EMBEDDER.name, dim=driver.EMBEDDER.dim) as store:
        episodic = EpisodicMemory(store, driver.EMBEDDER)
        return {user: episodic.count(user) for user in USERS}


def assert_files_intact(root: Path) -> None:
    """Every persona version, profile, trace event and manifest line on disk is whole."""
    home = root / "home"
    book = PersonaBook(home / "personas")
    for user_id in book.user_ids():
        versions = book.history(user_id)  # raises on a torn or foreign version file
        assert [p.version for p in versions] == list(range(1, len(versions) + 1))
        assert all(p.text.strip() for p in versions)
    for path in (home / "personas").glob("*/v*.json"):
        Persona.model_validate_json(path.read_text(encoding="utf-8"))
    profiles = SemanticMemory(home / "profiles")
    for user_id in USERS:
        profiles.get(user_id)  # raises on a torn profile
    reader = TraceReader(home / "traces")
    for path in (home / "traces").glob("*/*.jsonl"):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        # Only a torn *last* line may be dropped; every earlier event parses.
        assert len(reader.read_file(path)) >= len(lines) - 1
    for run_id in reader.run_ids():
        reader.run(run_id)
    for record in manifest(root).values():
        assert record.status in {"edited", "unchanged", "budget_exhausted"}


@pytest.mark.parametrize("seed", [11])
def test_compile_killed_at_random_points_resumes_without_loss_or_rework(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    run_to_end("ingest", tmp_path)
    assert memory_counts(tmp_path) == {user: driver.HISTORY_LENGTH for user in USERS}

    for _ in range(3):
        finished_before = set(manifest(tmp_path))
        kill_after(start("compile", tmp_path), rng.uniform(0.0, 2.0))
        redone = set(done_by_last_run(tmp_path)) & finished_before
        assert not redone, f"users finished before the restart were compiled again: {redone}"
        assert_files_intact(tmp_path)
        # Re-ingesting on every start never duplicated a memory.
        assert memory_counts(tmp_path) == {user: driver.HISTORY_LENGTH for user in USERS}

    finished_before = set(manifest(tmp_path))
    run_to_end("compile", tmp_path)
    fresh = done_by_last_run(tmp_path)
    assert not set(fresh) & finished_before
    assert set(fresh) | finished_before == set(USERS)
    assert set(manifest(tmp_path)) == set(USERS)
    assert_files_intact(tmp_path)
    book = PersonaBook(tmp_path / "home" / "personas")
    assert sorted(book.user_ids()) == sorted(USERS)
    assert all(book.current(user) is not None for user in USERS)


@pytest.mark.parametrize("seed", [5])
def test_ingest_killed_midway_never_duplicates_memories(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    child = start("ingest", tmp_path, sleep=0.01)
    kill_after(child, rng.uniform(0.05, 0.6))
    partial = memory_counts(tmp_path)
    assert all(0 <= count <= driver.HISTORY_LENGTH for count in partial.values())
    run_to_end("ingest", tmp_path)  # re-adds what the killed run had already stored
    assert memory_counts(tmp_path) == {user: driver.HISTORY_LENGTH for user in USERS}


def test_leftover_temporary_version_file_does_not_break_reading(tmp_path: Path) -> None:
    # What a kill between write_new's temp file and its link leaves behind.
    book = PersonaBook(tmp_path)
    first = book.add("*", "You like sports a great deal.", PersonaProvenance(source="manual"))
    folder = next(tmp_path.iterdir())
    (folder / ".v2.json.abc123.tmp").write_text('{"user_id": "*", "vers')
    assert book.current("*") == first
    assert book.user_ids() == ["*"]
    assert book.add("*", "You like politics a great deal.", PersonaProvenance(source="manual")).version == 2


def test_torn_manifest_line_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    # A kill mid-append leaves a last line without its newline; the next run appends after it.
    # Were the new record glued onto the fragment, it would be unreadable and redone forever.
    settings = Settings(home=tmp_path / "home", store=str(tmp_path / "store"))
    with Workspace(settings, lm=ScriptedLM(driver.slow_script(0.0)), embedder=driver.EMBEDDER) as ws:
        ws.episodic.add(driver.history("a") + driver.history("b"))
        aligner = driver.aligner(ws.settings.traces_dir)
        path = ws.settings.runs_dir / run_key(ws, aligner, driver.AGENT_OPTIONS) / "finished.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text('{"user_id": "ghost", "run_id": "r", "sta', encoding="utf-8")
        compile_users(ws, ["a"], aligner=aligner, agent_options=driver.AGENT_OPTIONS)
        assert set(finished_users(path)) == {"a"}
        calls = len(ws.lm.requests)
        records = compile_users(ws, ["a", "b"], aligner=aligner, agent_options=driver.AGENT_OPTIONS)
        assert [r.status for r in records] == ["edited", "edited"]
        assert set(finished_users(path)) == {"a", "b"}
        profile_calls = sum(r.asks_for("profile") for r in ws.lm.requests[calls:])
        assert profile_calls == 1  # only b was compiled the second time
