"""Alignment traces: one JSONL file of TraceEvents per (run, user), and a reader for them.

Layout: ``<traces_dir>/<run_id>/<hash of user id>.jsonl``. Lines are appended and fsynced one at a
time, so a killed run leaves every complete event readable; a torn last line is skipped.
"""

from __future__ import annotations

import logging
import re
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from personaagent import telemetry
from personaagent._files import append_line, user_dirname
from personaagent.errors import UnknownRun
from personaagent.records import (
    Aggregated,
    CompileFinished,
    CompileStarted,
    Critiqued,
    Edited,
    Gated,
    LMUsage,
    PersonaCommitted,
    Simulated,
    StepSkipped,
    TraceEvent,
    validate_user_id,
)

__all__ = [
    "new_run_id",
    "TraceWriter",
    "TraceReader",
    "RUN_ID",
    "UserTrace",
    "IterationView",
    "RunSummary",
    "UserRunSummary",
    "EditOutcomes",
    "format_trace",
]

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
        self._last_write_ns = time.time_ns()

    def write(self, event) -> None:
        self.events.append(event)
        if self.path is not None:
            append_line(self.path, event)
        # The step an event closes ran since the previous event: that window is its span.
        telemetry.record_trace_event(event, started_ns=self._last_write_ns)
        self._last_write_ns = time.time_ns()


@dataclass
class IterationView:
    """One alignment iteration, assembled from its events for display.

    Attributes:
        number: 1-based iteration.
        answers: the simulated answers the critiques are about (the persona in force).
        valset: the persona in force's answers on the valset, when the gate scores one.
        critiques: one per answer that was critiqued.
        gradient: the aggregated critiques, if the iteration got that far.
        edit: the persona rewrite, if the LM gave a usable one.
        trial: answers re-simulated with the edited persona (what the gate scored).
        gate: whether the edit was kept, and why.
        skipped: steps that failed or were cut by the budget.
        usage: LM cost of the iteration's steps.
    """

    number: int
    answers: list[Simulated] = field(default_factory=list)
    valset: list[Simulated] = field(default_factory=list)
    critiques: list[Critiqued] = field(default_factory=list)
    gradient: Aggregated | None = None
    edit: Edited | None = None
    trial: list[Simulated] = field(default_factory=list)
    gate: Gated | None = None
    skipped: list[StepSkipped] = field(default_factory=list)
    usage: LMUsage = field(default_factory=LMUsage)

    @property
    def score_after(self) -> float | None:
        """The score of the persona this iteration leaves in force (None without a gate)."""
        if self.gate is None:
            return None
        return self.gate.score_after if self.gate.accepted else self.gate.score_before


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
    def committed(self) -> PersonaCommitted | None:
        """The caller's store of the run's aligned persona, if it happened."""
        return next((e for e in self.events if isinstance(e, PersonaCommitted)), None)

    @property
    def persona_version(self) -> int | None:
        """The persona version the run stored (None if it stored none)."""
        if self.committed is not None:
            return self.committed.persona_version
        # Traces written before compile became pure recorded the saved version in the finish.
        return self.finished.persona_version if self.finished is not None else None

    def iteration_views(self) -> list[IterationView]:
        """The run's iterations, each with the answers it critiqued and the gate's trial answers.

        Each simulation says what it was for (its phase) and which iteration it belongs to. An
        iteration that re-simulated nothing critiques the answers the previous one left in force.
        """
        views: dict[int, IterationView] = {}
        for event in self.events:
            if isinstance(event, (CompileStarted, CompileFinished, PersonaCommitted)):
                continue
            view = views.setdefault(event.iteration, IterationView(number=event.iteration))
            if not isinstance(event, Gated):  # a gate's usage repeats its trial simulations'
                view.usage = view.usage + event.usage
            if isinstance(event, Simulated):
                {"batch": view.answers, "valset": view.valset, "trial": view.trial}[event.phase].append(event)
            elif isinstance(event, Critiqued):
                view.critiques.append(event)
            elif isinstance(event, Aggregated):
                view.gradient = event
            elif isinstance(event, Edited):
                view.edit = event
            elif isinstance(event, Gated):
                view.gate = event
            elif isinstance(event, StepSkipped):
                view.skipped.append(event)
        ordered = [views[number] for number in sorted(views)]
        for previous, view in zip(ordered, ordered[1:]):
            if not view.answers:
                view.answers = _answers_in_force(previous)
            if not view.valset:
                view.valset = list(previous.valset)
        return ordered

    def score_curve(self) -> list[tuple[int, float]]:
        """``(iteration, score)`` points: the initial score at 0, then the score after each gate."""
        views = self.iteration_views()
        initial = self.finished.score_initial if self.finished else None
        if initial is None and views and views[0].answers:
            initial = sum(s.score for s in views[0].answers) / len(views[0].answers)
        points = [(0, initial)] if initial is not None else []
        points += [(view.number, view.score_after) for view in views if view.score_after is not None]
        return points


def _answers_in_force(previous: IterationView) -> list[Simulated]:
    # An accepted edit leaves its trial answers in force for the batch items the trial
    # re-answered (the optimizer reuses them instead of re-simulating the batch); otherwise the
    # previous answers stay in force.
    if previous.gate is not None and previous.gate.accepted and previous.trial:
        by_id = {event.interaction_id: event for event in previous.trial}
        if all(answer.interaction_id in by_id for answer in previous.answers):
            return [by_id[answer.interaction_id] for answer in previous.answers]
    return list(previous.answers)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _indent(text: str, prefix: str = "      ") -> str:
    return textwrap.indent(text.strip() or "(empty)", prefix)


def format_trace(trace: UserTrace, *, query_chars: int = 90) -> str:
    """One user's alignment run as plain text for a terminal, iteration by iteration.

    Args:
        trace: the user's events in one run.
        query_chars: longest query shown per simulated answer.
    """
    lines = [f"User {trace.user_id!r} in run {trace.run_id}"]
    started = trace.started
    if started is not None:
        version = f"v{started.persona_version}" if started.persona_version else "the seed persona"
        lines.append(f"  started from {version}, {len(started.batch_ids)} recent interactions")
        lines.append(_indent(started.persona_text, "    | "))
    for view in trace.iteration_views():
        lines.append(f"  Iteration {view.number}")
        critiques = {c.interaction_id: c for c in view.critiques}
        for sim in view.answers:
            lines.append(f"    [{sim.score:.2f}] answered {_short(sim.simulated, 40)!r}, "
                         f"user said {_short(sim.truth, 40)!r}: {_short(sim.query, query_chars)}")
            if sim.interaction_id in critiques:
                lines.append(f"      critique: {_short(critiques[sim.interaction_id].critique, 300)}")
        if view.gradient is not None:
            note = ", truncated" if view.gradient.truncated else ""
            lines.append(f"    gradient ({view.gradient.num_critiques} critiques{note}):")
            lines.append(_indent(view.gradient.gradient))
        if view.edit is not None:
            lines.append("    persona diff:")
            lines.append(_indent(view.edit.diff))
        if view.valset:
            scores = ", ".join(f"{sim.score:.2f}" for sim in view.valset)
            lines.append(f"    valset answered: {scores}")
        if view.trial:
            scores = ", ".join(f"{sim.score:.2f}" for sim in view.trial)
            lines.append(f"    edited persona re-answered: {scores}")
        if view.gate is not None:
            verdict = "accepted" if view.gate.accepted else "rejected"
            lines.append(f"    gate: {verdict} ({view.gate.reason}); "
                         f"score {view.gate.score_before:.3f} -> {view.gate.score_after:.3f}")
        for skipped in view.skipped:
            lines.append(f"    skipped {skipped.step}: {_short(skipped.error, 200)}")
        lines.append(f"    LM: {view.usage.calls} calls, {view.usage.tokens} tokens, {view.usage.seconds:.1f} s")
    finished = trace.finished
    if finished is None:
        lines.append("  (no finish event: the run was interrupted or is still going)")
    else:
        stored = f"stored persona v{trace.persona_version}" if trace.persona_version else "no persona stored"
        lines.append(
            f"  finished: {finished.status}, score {finished.score_initial:.3f} -> {finished.score_final:.3f}, "
            f"{stored}, {finished.iterations} iteration(s) with critiques, {finished.usage.calls} LM calls, "
            f"{finished.usage.tokens} tokens, {finished.usage.seconds:.1f} s"
        )
    committed = trace.committed
    if committed is not None:
        parent = f"v{committed.parent_version}" if committed.parent_version else "none"
        lines.append(f"  stored as persona v{committed.persona_version} (parent {parent})")
    return "\n".join(lines)


@dataclass(frozen=True)
class UserRunSummary:
    """How one user's compile in a run ended (``status`` is ``"incomplete"`` without a finish)."""

    user_id: str
    status: str
    score_initial: float | None
    score_final: float | None
    persona_version: int | None

    @classmethod
    def of(cls, trace: UserTrace) -> UserRunSummary:
        finished = trace.finished
        if finished is None:
            return cls(trace.user_id, "incomplete", None, None, None)
        return cls(trace.user_id, finished.status, finished.score_initial, finished.score_final, trace.persona_version)


@dataclass(frozen=True)
class RunSummary:
    """One alignment run: each of its users' outcome, in user-file order."""

    run_id: str
    users: tuple[UserRunSummary, ...]


@dataclass(frozen=True)
class EditOutcomes:
    """What alignment did with its persona edits over many compiles, and why edits were lost.

    Attributes:
        compiles: user compiles read.
        nothing_to_learn: compiles that stopped before any edit: every batch answer was right,
            or no critique could be written.
        proposed: persona rewrites the editor returned.
        refused: rewrites the edit guard refused (empty, a loop, scaffolding, too long...), by reason.
        accepted: edits the gate kept.
        rejected: edits the gate refused, by reason (``"tie"``, ``"worse"``, ``"more failures"``).
    """

    compiles: int
    nothing_to_learn: int
    proposed: int
    refused: dict[str, int]
    accepted: int
    rejected: dict[str, int]

    @classmethod
    def of(cls, traces: Sequence[UserTrace]) -> EditOutcomes:
        refused: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        proposed = accepted = idle = 0
        for trace in traces:
            edits = [e for e in trace.events if isinstance(e, Edited)]
            guard = [e for e in trace.events if isinstance(e, StepSkipped) and e.step == "edit"]
            proposed += len(edits) + len(guard)
            refused.update(e.error.split(" (")[0].split(":")[0] for e in guard)
            if not edits and not guard:
                idle += 1
            for gate in (e for e in trace.events if isinstance(e, Gated)):
                if gate.accepted:
                    accepted += 1
                elif "failed" in gate.reason:
                    rejected["more failures"] += 1
                else:
                    rejected["tie" if gate.score_after == gate.score_before else "worse"] += 1
        return cls(len(traces), idle, proposed, dict(refused), accepted, dict(rejected))

    def describe(self) -> str:
        """One paragraph, e.g. for an evaluation report."""
        def reasons(counts: dict[str, int]) -> str:
            return ", ".join(f"{n} {why}" for why, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"

        return (
            f"{self.compiles} compiles: {self.nothing_to_learn} had nothing to learn (every batch answer right, "
            f"or no critique); {self.proposed} edits proposed, {sum(self.refused.values())} refused by the edit "
            f"guard ({reasons(self.refused)}), {self.accepted} accepted by the gate, "
            f"{sum(self.rejected.values())} rejected ({reasons(self.rejected)})."
        )


#: What a run id looks like (``new_run_id`` writes "20261201T061452Z-dd2b5f"): one folder name.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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
        # Bytes, split on newlines: one damaged line (torn by a kill, or not UTF-8) costs that
        # event only, never the rest of the file or the other runs listed beside it.
        for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                events.append(_EVENT.validate_json(line))
            except ValidationError:
                logger.warning("%s:%d: unreadable trace event skipped", path, number)
        return tuple(events)

    def _run_folder(self, run_id: str) -> Path:
        # A run id names one folder under the traces folder: never "", ".", ".." or a path.
        if not RUN_ID.match(run_id):
            raise UnknownRun(f"{run_id!r} is no trace run id (letters, digits, '.', '_', '-'); see `personaagent trace list`")
        return self.traces_dir / run_id

    def run(self, run_id: str) -> list[UserTrace]:
        """All users' traces of one run; KeyError if there is no such run."""
        folder = self._run_folder(run_id)
        if not folder.is_dir():
            raise UnknownRun(f"no trace run {run_id!r} in {self.traces_dir}; see `personaagent trace list`")
        traces = []
        for path in sorted(folder.glob("*.jsonl")):
            events = self.read_file(path)
            if events:
                traces.append(UserTrace(run_id=run_id, user_id=events[0].user_id, events=events))
        return traces

    def summaries(self) -> list[RunSummary]:
        """Every run, oldest first, with each user's status and scores."""
        return [
            RunSummary(run_id, tuple(UserRunSummary.of(trace) for trace in self.run(run_id)))
            for run_id in self.run_ids()
        ]

    def user(self, run_id: str, user_id: str) -> UserTrace:
        """One user's trace in one run; KeyError if absent."""
        path = self._run_folder(run_id) / f"{user_dirname(validate_user_id(user_id))}.jsonl"
        if not path.is_file():
            raise UnknownRun(f"run {run_id!r} has no trace for user {user_id!r}")
        return UserTrace(run_id=run_id, user_id=user_id, events=self.read_file(path))
