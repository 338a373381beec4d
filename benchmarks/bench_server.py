"""Load benchmark of the HTTP API: many concurrent clients, each its own user, adding and asking.

Run it with ``python benchmarks/bench_server.py [--clients 50] [--seconds 60]``. It starts the
real server (uvicorn, one process, as `personaagent serve` runs) over a fast scripted LM and the
hashing embedder, then, from this process, first one client alone for a few seconds (the
unloaded baseline) and then ``--clients`` concurrent clients for ``--seconds``; each client is
one user who alternately adds an interaction and asks a question. It stops by itself.

Checked on every response: the status is 2xx, and nothing of another user comes back (the
retrieved memory ids are ones this client added; no tool observation quotes another user's
marker). Printed: requests per second, and p50/p95 of the client-side latency and of the
service's own overhead, i.e. the latency minus the LM's time that the server reports in its
Server-Timing header (with this fake LM, what the service itself costs: HTTP, auth, validation,
embedding, the store, DSPy's prompt building and parsing, and queueing under load).
Exit status 1 if any request failed or leaked.

On 2 cores, run it alone (it saturates the CPU): ``flock /work/lm.lock python benchmarks/bench_server.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

KEY = "bench-key"
_LM_MS = re.compile(r"lm;dur=([0-9.]+)")
_MARKER = re.compile(r"marker-(\S+?)-x")


def serve(home: str, port: int) -> None:
    """The server process: the real app over a zero-latency scripted LM."""
    import uvicorn

    from personaagent.config import load_settings
    from personaagent.runtime.embedder import HashingEmbedder
    from personaagent.server import create_app
    from personaagent.testing import ScriptedLM, choosing_tool, persona_sensitive
    from personaagent.workspace import Workspace

    workspace = Workspace(load_settings(home=Path(home), store=str(Path(home) / "store")),
                          lm=ScriptedLM(choosing_tool(persona_sensitive())), embedder=HashingEmbedder(dim=64))
    app = create_app(workspace, api_keys=[KEY], close_workspace=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"add": [], "ask": []})
    overheads: dict[str, list[float]] = field(default_factory=lambda: {"add": [], "ask": []})
    errors: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)


async def client_loop(http: httpx.AsyncClient, user: str, deadline: float, stats: Stats) -> None:
    own_ids: set[str] = set()
    step = 0

    async def call(kind: str, path: str, body: dict) -> dict | None:
        started = time.perf_counter()
        try:
            response = await http.post(path, json=body)
        except httpx.HTTPError as exc:
            stats.errors.append(f"{kind} {user}: {type(exc).__name__}: {exc}")
            return None
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code // 100 != 2:
            stats.errors.append(f"{kind} {user}: HTTP {response.status_code} {response.text[:200]}")
            return None
        lm_ms = float(m.group(1)) if (m := _LM_MS.search(response.headers.get("server-timing", ""))) else 0.0
        stats.latencies[kind].append(elapsed)
        stats.overheads[kind].append(elapsed - lm_ms)
        return response.json()

    while time.monotonic() < deadline:
        step += 1
        added = await call("add", f"/v1/users/{user}/interactions", {"interactions": [
            {"query": f"marker-{user}-x match report {step}", "response": "SPORTS" if step % 3 else "POLITICS"}]})
        if added is not None:
            own_ids.update(i for i in added["memory_ids"] if i)
        answer = await call("ask", f"/v1/users/{user}/ask", {"query": f"match report {step}"})
        if answer is None:
            continue
        foreign = {m["memory_id"] for m in answer["retrieved"]} - own_ids
        markers = {m for call_ in answer["used_tools"] for m in _MARKER.findall(call_["observation"])}
        if answer["user_id"] != user or foreign or markers - {user}:
            stats.leaks.append(f"{user}: user {answer['user_id']!r}, foreign ids {sorted(foreign)[:3]}, "
                               f"markers {sorted(markers - {user})[:3]}")


async def run_phase(base_url: str, phase: str, clients: int, seconds: float) -> tuple[Stats, float]:
    stats = Stats()
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them, so a request
    # never goes out on a connection the server is closing at that moment (a ReadError under load).
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"},
                                 timeout=120, limits=limits) as http:
        started = time.monotonic()
        deadline = started + seconds
        # Users are new in every phase, so a client knows every memory id its user has.
        await asyncio.gather(*(client_loop(http, f"{phase}-user-{n}", deadline, stats) for n in range(clients)))
        return stats, time.monotonic() - started


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(share * 100) - 1] if len(values) > 1 else (
        values[0] if values else float("nan"))


def report(title: str, stats: Stats, seconds: float) -> None:
    total = sum(len(v) for v in stats.latencies.values())
    print(f"{title}: {total} requests in {seconds:.1f} s ({total / seconds:.1f}/s), "
          f"{len(stats.errors)} errors, {len(stats.leaks)} cross-user leaks")
    for kind in ("add", "ask"):
        lat, over = stats.latencies[kind], stats.overheads[kind]
        if lat:
            print(f"  {kind:3s} n={len(lat):6d}  latency p50 {percentile(lat, .5):7.1f} ms  p95 {percentile(lat, .95):7.1f} ms"
                  f"  | service overhead p50 {percentile(over, .5):7.1f} ms  p95 {percentile(over, .95):7.1f} ms")
    for problem in (stats.errors + stats.leaks)[:5]:
        print(f"  ! {problem}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline-seconds", type=float, default=5.0, help="one client alone, first")
    parser.add_argument("--serve", nargs=2, metavar=("HOME", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    with tempfile.TemporaryDirectory() as home:
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", home, str(port)],
                                  env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
        try:
            base_url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base_url}/healthz")
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the server did not start")
                    time.sleep(0.1)
            print(f"server pid {server.pid} on {base_url}; fake LM with no latency; {os.cpu_count()} CPUs")
            baseline, seconds = asyncio.run(run_phase(base_url, "baseline", 1, args.baseline_seconds))
            report("1 client (baseline)", baseline, seconds)
            loaded, seconds = asyncio.run(run_phase(base_url, "loaded", args.clients, args.seconds))
            report(f"{args.clients} clients", loaded, seconds)
        finally:
            server.terminate()
            server.wait(30)
    if baseline.errors or baseline.leaks or loaded.errors or loaded.leaks:
        sys.exit(1)


if __name__ == "__main__":
    main()
