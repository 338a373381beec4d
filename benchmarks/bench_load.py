"""Load benchmark: compile many users concurrently against a flaky fake LM.

Run it with ``python benchmarks/bench_load.py [--users 200] [--threads 8] [--failure-rate 0.1]
[--max-latency 0.005]``. Every LM call sleeps a random 0..max-latency seconds and a share of calls
fails (rate limits, which DSPy retries; crashes; empty replies). It prints the throughput in users
per second and LM calls per second, how many users ended in each status, and checks that every
user has a record and every saved persona reads back.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from personaagent.config import Settings
from personaagent.optimizers import PersonaAlignment, compile_users
from personaagent.records import AnswerFormat, Interaction, UserCompileRecord
from personaagent.runtime.embedder import HashingEmbedder
from personaagent.testing import ScriptedLM, flaky, persona_sensitive
from personaagent.workspace import Workspace

LABELS = AnswerFormat(kind="label", labels=("SPORTS", "POLITICS"))
AGENT_OPTIONS = {"answer_format": LABELS, "use_actions": False}
STATUSES = ("edited", "unchanged", "budget_exhausted", "failed")


def history(user_id: str, length: int = 5) -> list[Interaction]:
    start = datetime(2021, 1, 1)
    return [
        Interaction(user_id=user_id, query=f"{user_id} match report {day}", response="SPORTS" if day % 4 else "POLITICS",
                    timestamp=start + timedelta(days=day))
        for day in range(length)
    ]


def run_load(
    home: Path, *, users: int, threads: int, failure_rate: float, max_latency: float, seed: int = 0
) -> tuple[list[UserCompileRecord], Workspace, float]:
    """Compile ``users`` users at once; returns their records, the (open) workspace and seconds."""
    lm = ScriptedLM(flaky(persona_sensitive(), failure_rate=failure_rate, max_latency=max_latency, seed=seed))
    ws = Workspace(Settings(home=home, store=":memory:"), lm=lm, embedder=HashingEmbedder(64))
    user_ids = [f"user-{i:04d}" for i in range(users)]
    ws.episodic.add(i for user_id in user_ids for i in history(user_id))
    aligner = PersonaAlignment(num_recent=3, max_iterations=2, max_lm_calls=40, traces_dir=ws.settings.traces_dir)
    started = time.perf_counter()
    records = compile_users(ws, user_ids, aligner=aligner, agent_options=AGENT_OPTIONS, num_threads=threads)
    return records, ws, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--failure-rate", type=float, default=0.1)
    parser.add_argument("--max-latency", type=float, default=0.005, help="seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # The injected failures are expected; they are counted below instead of logged one by one.
    logging.getLogger("personaagent").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as home:
        records, ws, seconds = run_load(
            Path(home), users=args.users, threads=args.threads, failure_rate=args.failure_rate,
            max_latency=args.max_latency, seed=args.seed,
        )
        with ws:
            statuses = Counter(record.status for record in records)
            unreadable = sum(ws.personas.history(r.user_id) == [] and r.status != "failed" for r in records)
            calls = len(ws.lm.requests)
    print(f"{args.users} users, {args.threads} threads, {args.failure_rate:.0%} failing calls, "
          f"0-{args.max_latency * 1000:.0f} ms latency")
    print(f"  {seconds:.2f} s: {args.users / seconds:.1f} users/s, {calls / seconds:.0f} LM requests/s ({calls} requests)")
    print("  statuses: " + ", ".join(f"{status} {statuses.get(status, 0)}" for status in STATUSES))
    print(f"  records: {len(records)}/{args.users}; finished users without a readable persona: {unreadable}")
    failed_errors = Counter(r.error.split(":")[0] for r in records if r.status == "failed" and r.error)
    if failed_errors:
        print("  failed because: " + ", ".join(f"{kind} {n}" for kind, n in failed_errors.most_common()))


if __name__ == "__main__":
    main()
