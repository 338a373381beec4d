"""Compile jobs survive the server: a kill during a job loses no finished persona, resumes the
interrupted job and runs the queued one; a job that keeps killing the server is marked failed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from server_helpers import KEYS, history, wait_for_job, workspace

from personaagent.jobs import CompileJob, JobQueue
from personaagent.records import Interaction

DRIVER = Path(__file__).with_name("server_driver.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Path, sleep: float) -> tuple[subprocess.Popen, httpx.Client]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(DRIVER.parent)}
    process = subprocess.Popen([sys.executable, str(DRIVER), str(home), str(port), str(sleep)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEYS[0]}"},
                          timeout=30)
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.get("/healthz").status_code == 200:
                return process, client
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"server did not start: {process.stdout.read().decode(errors='replace')}")
        time.sleep(0.1)


def test_a_killed_server_resumes_the_running_job_and_runs_the_queued_one(tmp_path):
    home = tmp_path / "home"
    process, client = start_server(home, sleep=0.2)
    try:
        for user in ("alice", "bob"):
            assert client.post(f"/v1/users/{user}/interactions",
                               json={"interactions": history(user, user.upper())}).status_code == 200
        first = client.post("/v1/users/alice/compile", json={}).json()
        second = client.post("/v1/users/bob/compile", json={}).json()
        wait_for_job(client, first["job_id"], states=("running",))
        assert client.get(f"/v1/jobs/{second['job_id']}").json()["state"] == "queued"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        client.close()

    process, client = start_server(home, sleep=0.0)
    try:
        resumed = wait_for_job(client, first["job_id"])
        queued = wait_for_job(client, second["job_id"])
        assert (resumed["state"], resumed["attempts"]) == ("done", 2), resumed
        assert (queued["state"], queued["attempts"]) == ("done", 1), queued
        assert resumed["run_id"] == first["run_id"]  # the same trace run, continued
        for job in (resumed, queued):
            persona = client.get(f"/v1/users/{job['user_id']}/persona").json()
            assert persona["version"] == job["result"]["persona_version"]
            assert "love SPORTS" in persona["text"]
    finally:
        process.send_signal(signal.SIGINT)  # a clean stop: Ctrl-C
        assert process.wait(30) == 0
        client.close()


def test_a_job_interrupted_max_attempts_times_is_marked_failed_not_run_again(tmp_path):
    ws = workspace(tmp_path / "home")
    with ws:
        ws.episodic.add([Interaction(user_id="alice", query="q", response="SPORTS")])
        folder = ws.settings.jobs_dir
        folder.mkdir(parents=True)
        crashed = CompileJob(job_id="a" * 32, user_id="alice", run_id="run-1", state="running", attempts=2)
        (folder / f"{crashed.job_id}.json").write_text(crashed.model_dump_json())
        jobs = JobQueue(ws, max_attempts=2)
        jobs.start()
        try:
            failed = jobs.get(crashed.job_id)
        finally:
            jobs.stop()
    assert failed.state == "failed" and "interrupted 2 times" in failed.error
    assert ws.lm.requests == []  # never compiled again


@pytest.mark.parametrize("job_id", ["", "../../config", "A" * 32, "a" * 31])
def test_job_ids_that_are_not_queue_ids_are_unknown(tmp_path, job_id):
    from personaagent.errors import UnknownJob

    with pytest.raises(UnknownJob):
        JobQueue(workspace(tmp_path / "home")).get(job_id)


def test_a_second_job_for_the_same_user_compiles_afresh(tmp_path):
    # compile_users' manifest resumes a job with the same settings; a new job must not be
    # answered with the earlier job's result.
    ws = workspace(tmp_path / "home")
    with ws:
        ws.episodic.add(Interaction.model_validate({**record, "user_id": "alice"})
                        for record in history("alice", "ALICE"))
        jobs = JobQueue(ws)
        jobs.start()
        try:
            first = jobs.submit("alice")
            second = jobs.submit("alice")
            deadline = time.monotonic() + 60
            while jobs.get(second.job_id).state not in ("done", "failed") and time.monotonic() < deadline:
                time.sleep(0.05)
            first, second = jobs.get(first.job_id), jobs.get(second.job_id)
        finally:
            jobs.stop()
    assert first.result.run_id == first.run_id and second.result.run_id == second.run_id
    assert second.result.persona_version is not None
