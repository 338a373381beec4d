"""The README's main job on real data: ingest one user's history, compile their persona, answer.

The user is a test user of the committed ``news`` sample (LaMP-2N-style news categorization); the
question is one of that user's held-out articles, so the answer can be checked against the
category the author really chose.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from personaagent.agent import PersonaAgent
from personaagent.errors import EmptyHistory
from personaagent.evaluation import load_task
from personaagent.memory import AddReport
from personaagent.optimizers import PersonaAlignment, compile_users
from personaagent.records import Persona, UserCompileRecord
from personaagent.traces import new_run_id
from personaagent.workspace import Workspace

__all__ = ["DemoResult", "run_demo", "MIN_PROFILE"]

logger = logging.getLogger(__name__)

#: A demo user needs at least this many past articles for a persona to be worth compiling.
MIN_PROFILE = 20


@dataclass(frozen=True)
class DemoResult:
    """What the demo did, for the caller to show."""

    user_id: str
    ingested: AddReport
    compiled: UserCompileRecord
    query: str
    answer: str
    gold: str
    persona: Persona | None
    trace_dir: Path


def run_demo(
    workspace: Workspace,
    *,
    task_name: str = "news",
    num_recent: int = 3,
    iterations: int = 1,
    on_step: Callable[[str], None] = lambda message: None,
) -> DemoResult:
    """Ingest, compile and ask for the first test user of a sample task with enough history.

    Args:
        workspace: where the user's memories, persona and trace are stored.
        task_name: the sample task (``"news"`` or ``"ratings"``).
        num_recent: interactions simulated per alignment iteration (the paper's n).
        iterations: alignment iterations.
        on_step: called with a one-line description before each step (for progress output).

    Raises:
        EmptyHistory: no test user has ``MIN_PROFILE`` past interactions.
    """
    task = load_task(task_name)
    user_id = next((u for u in task.test_users if len(task.profile(u)) >= MIN_PROFILE), None)
    if user_id is None:
        raise EmptyHistory(f"no test user of task {task_name!r} has {MIN_PROFILE} past interactions")
    example = next(e for e in task.examples("test") if e.user_id == user_id)
    answer_format = task.spec.answer_format

    on_step(f"Ingesting {len(task.profile(user_id))} past interactions of {user_id!r} ({task_name} task)")
    ingested = workspace.episodic.add(task.profile(user_id))

    on_step(f"Compiling the persona of {user_id!r} ({iterations} iteration(s), n={num_recent}) "
            f"with the LM {workspace.settings.lm!r}")
    run_id = new_run_id()
    aligner = PersonaAlignment(
        num_recent=num_recent, max_iterations=iterations, traces_dir=workspace.settings.traces_dir
    )
    (compiled,) = compile_users(
        workspace, [user_id], aligner=aligner, agent_options={"answer_format": answer_format}, resume=False,
        run_id=run_id,
    )

    on_step(f"Answering a held-out query of {user_id!r}")
    agent = PersonaAgent(user_id, workspace=workspace, answer_format=answer_format)
    answer = agent(example.query).answer
    logger.info("demo: %r answered %r (gold %r)", user_id, answer, example.gold)
    return DemoResult(
        user_id=user_id,
        ingested=ingested,
        compiled=compiled,
        query=example.query,
        answer=str(answer),
        gold=example.gold,
        persona=workspace.personas.current(user_id),
        trace_dir=workspace.settings.traces_dir / run_id,
    )
