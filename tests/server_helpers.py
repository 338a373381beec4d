"""What the HTTP API tests share: the fake LM's script, histories, and a served workspace.

Not a test module (no ``test_`` prefix): pytest never collects it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from personaagent.config import load_settings
from personaagent.records import AnswerFormat
from personaagent.runtime.embedder import HashingEmbedder
from personaagent.server import create_app
from personaagent.testing import ScriptedLM, choosing_tool, persona_sensitive, running_server
from personaagent.workspace import Workspace

KEYS = ("key-one", "key-two")
LABELS = AnswerFormat(kind="label", labels=("SPORTS", "POLITICS"))
#: Tool choice: one memory search; everything else as ``persona_sensitive`` answers.
script = choosing_tool(persona_sensitive())


def history(user_id: str, secret: str, length: int = 5) -> list[dict[str, Any]]:
    """Interaction records of one user; every query carries ``secret`` so a leak is visible."""
    return [
        {"query": f"{secret} match report {day}", "response": "SPORTS" if day % 4 else "POLITICS",
         "timestamp": f"2024-01-{day + 1:02d}T00:00:00Z"}
        for day in range(length)
    ]


def workspace(home: Path, lm: Any = None) -> Workspace:
    """A workspace on a folder store (as a server has), the scripted LM and the hashing embedder."""
    return Workspace(
        load_settings(home=home, store=str(home / "store")),
        lm=lm if lm is not None else ScriptedLM(script),
        embedder=HashingEmbedder(dim=64),
    )


@contextmanager
def served(ws: Workspace, *, api_keys: tuple[str, ...] | None = KEYS) -> Iterator[httpx.Client]:
    """The real server (uvicorn on a loopback port) and a client authenticated with the first key."""
    app = create_app(ws, api_keys=api_keys, close_workspace=True)
    with running_server(app) as url:
        headers = {"Authorization": f"Bearer {api_keys[0]}"} if api_keys else {}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            yield client


def wait_for_job(client: httpx.Client, job_id: str, *, states=("done", "failed"), timeout: float = 60) -> dict:
    """Poll a job until it is in one of ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")
        time.sleep(0.05)
