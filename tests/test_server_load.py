"""Concurrent clients of the real server, each its own user: no errors and no cross-user data.
(benchmarks/bench_server.py runs the same clients for 60 s and prints the latencies.)"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from server_helpers import served, workspace

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import bench_server  # noqa: E402


def test_concurrent_users_get_only_their_own_memories(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_server, "KEY", "key-one")  # the served workspace's first key
    with served(workspace(tmp_path / "home")) as client:
        stats, _ = asyncio.run(bench_server.run_phase(str(client.base_url), "t", clients=8, seconds=3))
    assert stats.errors == [] and stats.leaks == []
    assert len(stats.latencies["ask"]) >= 8 and len(stats.latencies["add"]) >= 8


def test_the_leak_check_sees_another_users_memory(tmp_path, monkeypatch):
    # The same clients against a server whose search ignores the user: the check must fire.
    monkeypatch.setattr(bench_server, "KEY", "key-one")
    ws = workspace(tmp_path / "home")
    search = ws.episodic.search
    monkeypatch.setattr(ws.episodic, "search", lambda user_id, query, k=5, **cut: search("t-user-0", query, k, **cut))
    with served(ws) as client:
        stats, _ = asyncio.run(bench_server.run_phase(str(client.base_url), "t", clients=3, seconds=2))
    assert stats.leaks and stats.errors == []
