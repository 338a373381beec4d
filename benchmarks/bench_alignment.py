"""Prints the alignment optimizer's cost.

1. Framework overhead with an instant fake LM: users compiled per second and milliseconds per
   iteration, i.e. what personaagent itself costs around the LM calls.
2. With the embedded local LM (skip with --fake-only): seconds, LM calls and tokens per user, on
   real users of the committed news sample.

Usage: python benchmarks/bench_alignment.py [--users 50] [--local-users 3] [--fake-only]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from personaagent.config import Settings
from personaagent.evaluation import load_task
from personaagent.optimizers import PersonaAlignment, compile_users
from personaagent.runtime import HashingEmbedder
from personaagent.testing import ScriptedLM
from personaagent.workspace import Workspace


def instant(request):
    fixed = {"answer": "POLITICS", "tool_name": "finish", "critique": "The user writes about politics."}
    text = "You write about politics, elections and the economy, and you answer accordingly."
    return {field: fixed.get(field, text) for field in request.output_fields}


def run(workspace: Workspace, users: list[str], spec, iterations: int) -> tuple[float, list]:
    for example in load_task(spec.name).examples("dev") + load_task(spec.name).examples("test"):
        if example.user_id in users:
            workspace.episodic.add(example.profile)
    aligner = PersonaAlignment(max_iterations=iterations, stop_when_perfect=False, traces_dir=workspace.settings.traces_dir)
    started = time.perf_counter()
    records = compile_users(
        workspace, users, aligner=aligner, agent_options={"answer_format": spec.answer_format}
    )
    return time.perf_counter() - started, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=40, help="users for the fake-LM overhead run")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--local-users", type=int, default=3, help="users for the local-LM run")
    parser.add_argument("--fake-only", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the optimizer logs each rejected edit as a warning

    task = load_task("news")
    users = list(task.users)[: args.users]
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), store=":memory:")
        with Workspace(settings, lm=ScriptedLM(instant), embedder=HashingEmbedder()) as ws:
            seconds, records = run(ws, users, task.spec, args.iterations)
        iterations = sum(args.iterations for r in records if r.status != "failed")
        calls = sum(r.usage.calls for r in records)
        print(f"fake LM, {len(users)} users x {args.iterations} iterations (n=3, gate on):")
        print(f"  users compiled per second : {len(users) / seconds:.1f}")
        print(f"  ms per iteration          : {1000 * seconds / max(iterations, 1):.1f}")
        print(f"  LM calls per user         : {calls / len(users):.1f}")
        print(f"  ms of framework per LM call: {1000 * seconds / max(calls, 1):.2f}")

    if args.fake_only:
        return
    local_users = list(task.users_of("dev"))[: args.local_users]
    with tempfile.TemporaryDirectory() as home:
        with Workspace(Settings(home=Path(home), store=":memory:")) as ws:
            ws.lm, ws.embedder  # load both before timing
            seconds, records = run(ws, local_users, task.spec, 1)
        print(f"local LM (SmolLM2-135M), {len(local_users)} news users, 1 iteration (n=3, gate on):")
        for r in records:
            print(
                f"  {r.user_id[:28]:28} {r.status:9} score {r.score_initial} -> {r.score_final}  "
                f"calls {r.usage.calls}  tokens {r.usage.tokens}  LM seconds {r.usage.seconds:.1f}"
            )
        print(f"  seconds per user: {seconds / len(local_users):.1f}")
        print(f"  tokens per user : {sum(r.usage.tokens for r in records) / len(records):.0f}")


if __name__ == "__main__":
    main()
