"""Compile the personas of many users: in parallel, within per-user budgets, resumable.

A run's progress is a JSONL manifest of finished users under ``<runs_dir>/<config key>/``. The
key hashes everything that changes a compile's outcome (optimizer settings, LM, answer format),
so restarting the same job skips users already finished, and a changed job starts afresh.
Each user's aligned persona is stored when their compile finishes, as a compare-and-swap against
the version the compile started from; a killed run loses at most the users in flight, never a
finished persona.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dspy.utils.exceptions import LMError
from dspy.utils.parallelizer import ParallelExecutor
from pydantic import ValidationError

from personaagent._files import append_line
from personaagent.agent import PersonaAgent
from personaagent.errors import (
    LM_UNUSABLE_ERRORS,
    CompileStopped,
    PersonaAgentError,
    PersonaConflict,
    command_hint,
    first_line,
)
from personaagent.records import Persona, PersonaCommitted, UserCompileRecord
from personaagent import telemetry
from personaagent.runtime.usage import metered
from personaagent.traces import TraceWriter, new_run_id
from personaagent.workspace import Workspace

from .persona_alignment import AlignmentResult, PersonaAlignment

__all__ = ["compile_users", "commit_aligned", "run_key", "finished_users"]

logger = logging.getLogger(__name__)

#: Users in a row whose compile the LM itself failed (after retries) before a run stops: an LM server that refuses connections
#: or an unknown provider fails every user the same way (DSPy reports them as server or request
#: errors, after its retries), and going on would only repeat the failure for every user.
MAX_FAILED_IN_A_ROW = 3


def run_key(workspace: Workspace, aligner: PersonaAlignment, agent_options: dict[str, Any]) -> str:
    """A short hash of what decides a compile's outcome; equal keys mean resumable runs."""
    material = {
        "optimizer": aligner.config(),
        "lm": workspace.settings.lm,
        "agent": {key: repr(value) for key, value in sorted(agent_options.items())},
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _manifest(workspace: Workspace, key: str) -> Path:
    return workspace.settings.runs_dir / key / "finished.jsonl"


def finished_users(manifest: Path) -> dict[str, UserCompileRecord]:
    """Users a manifest records as finished (a torn last line from a kill is ignored)."""
    done: dict[str, UserCompileRecord] = {}
    if not manifest.is_file():
        return done
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            record = UserCompileRecord.model_validate_json(line)
        except ValidationError:
            continue
        done[record.user_id] = record
    return done


def commit_aligned(aligned: PersonaAgent, *, traces_dir: Path | None) -> Persona | None:
    """Store a compiled program's persona if its compile accepted an edit, and trace the commit.

    The store is ``aligned.commit_persona()``: a compare-and-swap against the version the
    compile started from. The commit is appended to the run's trace as a PersonaCommitted event.

    Returns:
        The stored Persona, or None when the compile changed nothing.

    Raises:
        PersonaConflict: another version was stored while the compile ran; nothing is written.
    """
    result: AlignmentResult = aligned.alignment_result
    if result.accepted_edits == 0:
        return None
    persona = aligned.commit_persona()
    TraceWriter(traces_dir, result.run_id, result.user_id).write(
        PersonaCommitted(
            run_id=result.run_id,
            user_id=result.user_id,
            persona_version=persona.version,
            parent_version=persona.parent_version,
        )
    )
    return persona


def compile_users(
    workspace: Workspace,
    user_ids: Sequence[str],
    *,
    aligner: PersonaAlignment,
    agent_options: dict[str, Any] | None = None,
    num_threads: int = 1,
    resume: bool = True,
    run_id: str | None = None,
    on_user_done: Callable[[UserCompileRecord], None] | None = None,
) -> list[UserCompileRecord]:
    """Seed (if needed), recount the facts (``PersonaAgent.with_recounted_facts``), align and
    store the persona of every user in ``user_ids``.

    Args:
        workspace: where memories, personas and traces live.
        user_ids: users to compile; each needs episodic memories.
        aligner: the configured optimizer (its budgets apply per user).
        agent_options: keyword arguments for each PersonaAgent (answer_format, k, ...).
        num_threads: users compiled at once. Defaults to 1.
        resume: skip users this same job already finished. Defaults to True.
        run_id: trace run id. Defaults to a new one.
        on_user_done: called (from worker threads) with each user's record, e.g. for progress.

    Returns:
        One record per requested user, in the order given (resumed users keep their old record).
        A user whose persona was changed by someone else while their compile ran ends as
        "conflict": the edit is not stored, and a rerun compiles them again.

    Raises:
        One of ``errors.LM_UNUSABLE_ERRORS`` (e.g. DSPy's ``LMNotConfiguredError``): the LM cannot
            be used at all. The run stops there; users finished before it stay finished.
        CompileStopped: ``MAX_FAILED_IN_A_ROW`` users in a row failed; users finished before stay
            finished, and a rerun of the same job resumes after them.
    """
    agent_options = dict(agent_options or {})
    run_id = run_id or new_run_id()
    manifest = _manifest(workspace, run_key(workspace, aligner, agent_options))
    done = finished_users(manifest) if resume else {}
    todo = [user for user in dict.fromkeys(user_ids) if user not in done]
    if done:
        logger.info("resuming: %d of %d users already compiled", len(user_ids) - len(todo), len(user_ids))
    write_lock = threading.Lock()
    stop: list[Exception] = []  # why the run stops; set once, then every worker returns at once
    failed_in_a_row = 0

    def compile_one(user_id: str) -> UserCompileRecord | None:
        nonlocal failed_in_a_row
        if stop:
            return None
        outcome: dict[str, Any]
        lm_failed = False  # the LM itself failed this user (after DSPy's retries)
        with telemetry.span("personaagent.compile", user_id=user_id, run_id=run_id, kind="CHAIN"), metered() as meter:
            try:
                agent = PersonaAgent(user_id, workspace=workspace, **agent_options).seeded().with_recounted_facts()
                if agent.persona_provenance is not None:
                    agent.commit_persona()  # the seed as the user's first version, or recounted facts
                aligned = aligner.compile(agent, run_id=run_id)
                result: AlignmentResult = aligned.alignment_result
                outcome = {
                    "status": result.status, "score_initial": result.score_initial, "score_final": result.score_final
                }
                if result.status == "failed":  # a failed record always says why
                    outcome["error"] = f"no simulated answer succeeded; see `{command_hint('trace', 'show', run_id)}`"
                try:
                    commit_aligned(aligned, traces_dir=aligner.traces_dir)
                    outcome["persona_version"] = aligned.persona_version
                except PersonaConflict as exc:
                    logger.warning("user %r: aligned persona not stored: %s", user_id, exc)
                    outcome.update(status="conflict", error=str(exc))
            except LM_UNUSABLE_ERRORS as exc:
                with write_lock:
                    stop.append(exc)  # every other user would fail the same way
                return None
            except LMError as exc:  # DSPy already retried: this user's compile failed on the LM
                logger.warning("user %r not compiled: the LM failed: %s", user_id, first_line(exc))
                outcome = {"status": "failed", "error": f"{type(exc).__name__}: {first_line(exc)}"}
                lm_failed = True
            except PersonaAgentError as exc:
                logger.warning("user %r not compiled: %s", user_id, exc)
                outcome = {"status": "failed", "error": str(exc)}
            except Exception as exc:  # one user's failure must not stop the others
                logger.exception("user %r failed", user_id)
                outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        record = UserCompileRecord(user_id=user_id, run_id=run_id, usage=meter.usage, **outcome)
        with write_lock:
            if record.status not in ("failed", "conflict"):
                append_line(manifest, record)
            # Only the LM's own failures count: an unparseable answer now and then is one user's bad luck.
            failed_in_a_row = failed_in_a_row + 1 if lm_failed else 0
            if failed_in_a_row >= MAX_FAILED_IN_A_ROW and not stop:
                stop.append(CompileStopped(
                    f"stopped after {failed_in_a_row} users in a row failed (the last, {user_id!r}: {record.error}); "
                    "fix that and run the same command again: users finished before are kept"
                ))
        if on_user_done is not None:
            on_user_done(record)
        return record

    # timeout=0 turns off straggler resubmission: a slow user's compile must never run twice.
    executor = ParallelExecutor(num_threads=num_threads, disable_progress_bar=True, max_errors=len(todo) + 1, timeout=0)
    fresh = dict(zip(todo, executor.execute(compile_one, todo))) if todo else {}
    if stop:
        raise stop[0]
    return [fresh.get(user) or done[user] for user in dict.fromkeys(user_ids)]
