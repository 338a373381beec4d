"""Alignment traces: one JSONL file of TraceEvents per (run, user), and a reader for them.

Layout: ``<traces_dir>/<run_id>/<hash of user id>.jsonl``. Lines are appended and fsynced one at a
time, so a killed run leaves every complete event readable; a torn last line is skipped.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from personaagent._files import append_line, user_dirname
from personaagent.records import CompileFinished, CompileStarted, Gated, TraceEvent

__all__ = ["new_run_id", "TraceWriter", "TraceReader", "UserTrace"]

logger = logging.getLogger(__name__)

_EVENT = TypeAdapter(TraceEvent)


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a short random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


class TraceWriter:
    """Appends one user's events of one run to its JSONL file (and keeps them in memory)."""

    def __init__(self, traces_dir: Path | None, run_id: str, user_id: str) -> None:
        self.path = traces_dir / run_id / f"{user_dirname(user_id)}.jsonl" if traces_dir is not None else None
        self.events: list = []

    def write(self, event) -> None:
        self.events.append(event)
        if self.path is not None:
            append_line(self.path, event)


@dataclass(frozen=True)
class UserTrace:
    """Every event of one user in one run, in order."""

    run_id: str
    user_id: str
    events: tuple

    @property
    def started(self) -> CompileStarted | None:
        return next((e for e in self.events if isinstance(e, CompileStarted)), None)

    @property
    def finished(self) -> CompileFinished | None:
        return next((e for e in self.events if isinstance(e, CompileFinished)), None)

    @property
    def gates(self) -> list[Gated]:
        return [e for e in self.events if isinstance(e, Gated)]

    def iterations(self) -> dict[int, list]:
        """Events grouped by iteration number (0 holds start and finish)."""
        grouped: dict[int, list] = {}
        for event in self.events:
            grouped.setdefault(event.iteration, []).append(event)
        return grouped


class TraceReader:
    """Reads the traces under one folder.

    Args:
        traces_dir: the folder runs were written to (``Settings.traces_dir``).
    """

    def __init__(self, traces_dir: Path) -> None:
        self.traces_dir = Path(traces_dir)

    def run_ids(self) -> list[str]:
        """Run ids, oldest first."""
        if not self.traces_dir.is_dir():
            return []
        return sorted(p.name for p in self.traces_dir.iterdir() if p.is_dir())

    def read_file(self, path: Path) -> tuple:
        events = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    events.append(_EVENT.validate_json(line))
                except ValidationError:
                    # A run killed mid-write can leave a torn last line; everything before it stands.
                    logger.warning("%s:%d: unreadable trace event skipped", path, number)
        return tuple(events)

    def run(self, run_id: str) -> list[UserTrace]:
        """All users' traces of one run; KeyError if there is no such run."""
        folder = self.traces_dir / run_id
        if not folder.is_dir():
            raise KeyError(f"no trace run {run_id!r} in {self.traces_dir}; see `personaagent trace list`")
        traces = []
        for path in sorted(folder.glob("*.jsonl")):
            events = self.read_file(path)
            if events:
                traces.append(UserTrace(run_id=run_id, user_id=events[0].user_id, events=events))
        return traces

    def user(self, run_id: str, user_id: str) -> UserTrace:
        """One user's trace in one run; KeyError if absent."""
        path = self.traces_dir / run_id / f"{user_dirname(user_id)}.jsonl"
        if not path.is_file():
            raise KeyError(f"run {run_id!r} has no trace for user {user_id!r}")
        return UserTrace(run_id=run_id, user_id=user_id, events=self.read_file(path))
