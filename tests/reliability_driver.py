"""A child process for the crash tests: ingests or compiles a fixed set of users, slowly enough
that the parent can SIGKILL it mid-way (tests/test_reliability_crash.py).

Usage: ``python tests/reliability_driver.py ingest|compile HOME STORE NUM_USERS SLEEP DONE_FILE``

* ``ingest`` adds every user's history one interaction at a time (each its own store write).
* ``compile`` (re-)ingests the histories in one batch, then runs ``compile_users`` over the users with a ScriptedLM that sleeps SLEEP seconds
  per call; every user compiled *by this process* is appended to DONE_FILE, so the parent can
  tell which users a restart redid.

Not a test module (no ``test_`` prefix): pytest never collects it.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from personaagent.config import Settings
from personaagent.optimizers import PersonaAlignment, compile_users
from personaagent.records import AnswerFormat, Interaction
from personaagent.runtime.embedder import HashingEmbedder
from personaagent.testing import ScriptedLM, persona_sensitive
from personaagent.workspace import Workspace

LABELS = AnswerFormat(kind="label", labels=("SPORTS", "POLITICS"))
AGENT_OPTIONS = {"answer_format": LABELS, "use_actions": False}
EMBEDDER = HashingEmbedder(dim=64)
HISTORY_LENGTH = 6


def user_ids(count: int) -> list[str]:
    # Odd ids on purpose: the crash guarantees must not depend on "nice" folder names.
    odd = ["*", "../x", "ユーザー🙂", " padded "]
    return [odd[i] if i < len(odd) else f"user-{i:02d}" for i in range(count)]


def history(user_id: str) -> list[Interaction]:
    start = datetime(2021, 1, 1)
    return [
        Interaction(
            user_id=user_id,
            query=f"{user_id} match report number {day}",
            response="SPORTS" if day % 3 else "POLITICS",
            timestamp=start + timedelta(days=day),
        )
        for day in range(HISTORY_LENGTH)
    ]


def aligner(traces_dir: Path) -> PersonaAlignment:
    return PersonaAlignment(num_recent=3, max_iterations=2, traces_dir=traces_dir)


def slow_script(sleep: float):
    """Persona-sensitive answers (so edits are accepted and saved), each call taking ``sleep`` s."""
    answers = persona_sensitive(critique="The user mostly files match reports under sports.")

    def script(request):
        time.sleep(sleep)
        return answers(request)

    return script


def workspace(home: str, store: str, sleep: float) -> Workspace:
    return Workspace(Settings(home=Path(home), store=store), lm=ScriptedLM(slow_script(sleep)), embedder=EMBEDDER)


def main(argv: list[str]) -> None:
    mode, home, store, count, sleep, done_file = argv[0], argv[1], argv[2], int(argv[3]), float(argv[4]), argv[5]
    users = user_ids(count)
    with workspace(home, store, sleep) as ws:
        print("ready", flush=True)
        if mode == "ingest":
            for user_id in users:
                for interaction in history(user_id):
                    ws.episodic.add([interaction])
                    time.sleep(sleep)
        elif mode == "compile":
            # Re-ingesting is part of every (re)start: it must never duplicate a memory.
            ws.episodic.add(i for user_id in users for i in history(user_id))

            def done(record):
                with open(done_file, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"user_id": record.user_id, "status": record.status}) + "\n")

            compile_users(
                ws, users, aligner=aligner(ws.settings.traces_dir), agent_options=AGENT_OPTIONS, num_threads=2, on_user_done=done
            )
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
