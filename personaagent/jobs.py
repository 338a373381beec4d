"""Background compiles that survive a restart: a durable queue of per-user compile jobs.

Each job is one JSON file, ``<home>/jobs/<job id>.json``, rewritten atomically at every state
change (queued -> running -> done | failed). One worker thread runs the jobs one at a time, in
the order they were submitted, through ``compile_users`` (the same durable path as
``personaagent compile``): personas are saved as each edit is accepted, and a finished user is
recorded in the run's manifest before the job is marked done.

When a queue starts, it picks up what an earlier process left: queued jobs run, and a job that
was running when the process died runs again (its compile resumes from the manifest), unless it
was already interrupted ``max_attempts`` times; then it is marked failed, so a compile that
kills its process cannot loop forever.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from personaagent._files import read_model, write_atomic
from personaagent.errors import UnknownJob, UnreadableFile
from personaagent.optimizers import PersonaAlignment, compile_users
from personaagent.records import AnswerFormat, Record, UserCompileRecord, UserId, utc_now
from personaagent.traces import new_run_id
from personaagent.workspace import Workspace

__all__ = ["CompileOptions", "CompileJob", "JobQueue", "JobState"]

logger = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed"]

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class CompileOptions(Record):
    """How to compile one user's persona: the options of ``personaagent compile``."""

    answer_format: AnswerFormat | None = None
    iterations: int = Field(default=1, ge=1, le=20, description="Alignment iterations.")
    recent: int = Field(default=3, ge=1, le=50, description="Latest interactions simulated per iteration.")
    max_calls: int | None = Field(
        default=None, ge=1, description="Per-user budget of LM calls for alignment (a first seed's profile call is extra)."
    )
    max_tokens: int | None = Field(
        default=None, ge=1, description="Per-user budget of LM tokens for alignment (a first seed's profile call is extra)."
    )

    def aligner(self, traces_dir: Path) -> PersonaAlignment:
        """The configured PersonaAlignment optimizer, tracing under ``traces_dir``."""
        return PersonaAlignment(
            num_recent=self.recent,
            max_iterations=self.iterations,
            max_lm_calls=self.max_calls,
            max_tokens=self.max_tokens,
            traces_dir=traces_dir,
        )

    def agent_options(self) -> dict[str, Any]:
        return {"answer_format": self.answer_format} if self.answer_format is not None else {}


class CompileJob(Record):
    """One user's compile, as the queue keeps it on disk."""

    job_id: str
    user_id: UserId
    state: JobState = "queued"
    options: CompileOptions = Field(default_factory=CompileOptions)
    run_id: str = Field(description="The trace run id of the compile (see /v1/runs/{run_id}/...).")
    attempts: int = Field(default=0, ge=0, description="Times a process started running this job.")
    created_at: datetime = Field(default_factory=utc_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: UserCompileRecord | None = None
    error: str | None = None


class JobQueue:
    """Runs compile jobs one at a time in a background thread; jobs persist across restarts.

    Args:
        workspace: the workspace whose users are compiled (its LM, store and persona book).
        folder: where job files live. Defaults to ``workspace.settings.jobs_dir``.
        max_attempts: a job interrupted by this many process deaths is marked failed instead of
            run again. Defaults to 3.

    Examples:
        >>> jobs = JobQueue(workspace)  # doctest: +SKIP
        >>> jobs.start()  # doctest: +SKIP
        >>> job = jobs.submit("alice", CompileOptions(iterations=2))  # doctest: +SKIP
        >>> jobs.get(job.job_id).state  # doctest: +SKIP
        'running'
    """

    def __init__(
        self,
        workspace: Workspace,
        *,
        folder: Path | None = None,
        max_attempts: int = 3,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.workspace = workspace
        self.folder = Path(folder) if folder is not None else workspace.settings.jobs_dir
        self.max_attempts = max_attempts
        self._pending: queue.Queue[str] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the jobs on disk ---------------------------------------------------------------------

    def _path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.json"

    def _save(self, job: CompileJob) -> CompileJob:
        write_atomic(self._path(job.job_id), job)
        return job

    def get(self, job_id: str) -> CompileJob:
        """The job's current record.

        Raises:
            UnknownJob: No job has this id.
        """
        path = self._path(job_id) if _JOB_ID.match(job_id) else None
        if path is None or not path.is_file():
            raise UnknownJob(f"no compile job {job_id!r}")
        return read_model(path, CompileJob, "job")

    def jobs(self) -> list[CompileJob]:
        """Every job on disk, oldest first (an unreadable file is logged and left out)."""
        found = []
        for path in self.folder.glob("*.json") if self.folder.is_dir() else ():
            try:
                found.append(read_model(path, CompileJob, "job"))
            except UnreadableFile as exc:
                logger.warning("%s; skipped", exc)
        return sorted(found, key=lambda job: (job.created_at, job.job_id))

    def submit(self, user_id: str, options: CompileOptions | None = None) -> CompileJob:
        """Queue a compile of ``user_id``'s persona and return the queued job.

        Raises:
            UnknownUser: The user has no memories to compile from.
        """
        self.workspace.episodic.require_user(user_id)
        job = self._save(
            CompileJob(job_id=uuid.uuid4().hex, user_id=user_id, options=options or CompileOptions(), run_id=new_run_id())
        )
        logger.info("job %s queued: compile user %r", job.job_id, user_id)
        self._pending.put(job.job_id)
        return job

    # --- the worker ---------------------------------------------------------------------------

    def start(self) -> None:
        """Recover the jobs an earlier process left unfinished, then start the worker thread."""
        if self._thread is not None:
            raise RuntimeError("the job queue is already started")
        for job in self.jobs():
            if job.state == "running":
                if job.attempts >= self.max_attempts:
                    self._finish(job, "failed", error=f"interrupted {job.attempts} times (the process stopped "
                                                       "during the compile); submit it again")
                    continue
                logger.info("job %s was interrupted; running it again", job.job_id)
                job = self._save(job.model_copy(update={"state": "queued"}))
            if job.state == "queued":
                self._pending.put(job.job_id)
        self._stopping.clear()
        # A daemon thread: a compile in flight must not keep the process alive; its job stays
        # "running" on disk and is resumed by the next start.
        self._thread = threading.Thread(target=self._work, name="personaagent-compile-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop taking jobs and wait up to ``timeout`` seconds for the one in flight.

        Returns:
            True if the worker ended; False if a compile is still running (its job stays
            "running" and is resumed when a queue starts on the same folder again).
        """
        self._stopping.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        ended = not self._thread.is_alive()
        self._thread = None
        return ended

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                job_id = self._pending.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                job = self.get(job_id)
            except (UnknownJob, UnreadableFile) as exc:
                logger.warning("queued job %s cannot be read, skipped: %s", job_id, exc)
                continue
            if job.state == "queued":
                self._run(job)

    def _run(self, job: CompileJob) -> None:
        job = self._save(
            job.model_copy(update={"state": "running", "attempts": job.attempts + 1, "started_at": utc_now()})
        )
        logger.info("job %s running (attempt %d)", job.job_id, job.attempts)
        try:
            record = self._compile(job)
        except Exception as exc:  # the worker must outlive any one job
            if self._stopping.is_set():
                return  # shut down mid-compile (e.g. the store was closed): resumed on the next start
            logger.exception("job %s failed", job.job_id)
            self._finish(job, "failed", error=f"{type(exc).__name__}: {exc}")
            return
        if self._stopping.is_set() and record.status == "failed":
            return  # likely the shutdown itself; the next start runs it again
        self._finish(job, "failed" if record.status == "failed" else "done", result=record, error=record.error)

    def _compile(self, job: CompileJob) -> UserCompileRecord:
        def compile_once(resume: bool) -> UserCompileRecord:
            return compile_users(
                self.workspace,
                [job.user_id],
                aligner=job.options.aligner(self.workspace.settings.traces_dir),
                agent_options=job.options.agent_options(),
                num_threads=1,
                resume=resume,
                run_id=job.run_id,
            )[0]

        if job.attempts == 1:
            return compile_once(resume=False)  # a new job asks for a fresh compile, whatever ran before
        record = compile_once(resume=True)
        # The manifest may hold an earlier job's compile with the same settings; only this job's
        # own finished compile counts as a resumed result.
        return record if record.run_id == job.run_id else compile_once(resume=False)

    def _finish(self, job: CompileJob, state: JobState, *, result: UserCompileRecord | None = None,
                error: str | None = None) -> None:
        job = self._save(job.model_copy(update={"state": state, "finished_at": utc_now(), "result": result,
                                                "error": error}))
        logger.info("job %s %s", job.job_id, state)
