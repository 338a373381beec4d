"""Continual alignment: re-align a user's persona every k new interactions, off the answer path.

Answers keep using the current persona while a re-alignment runs in a background thread; the
aligned persona is stored and swapped in only when the optimizer finishes, and only if no other
version of the user's persona was stored meanwhile.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from personaagent.agent import PersonaAgent
from personaagent.errors import PersonaConflict
from personaagent.memory import AddReport

from .many_users import commit_aligned
from .persona_alignment import PersonaAlignment

__all__ = ["ContinualAlignment"]

logger = logging.getLogger(__name__)


class ContinualAlignment:
    """Wraps a PersonaAgent so that observing interactions keeps its persona aligned.

    Args:
        agent: the user's agent; ``self.agent`` is replaced by the aligned copy when a
            re-alignment finishes.
        aligner: the optimizer to run. Defaults to ``PersonaAlignment()`` (paper settings).
        every: re-align after this many new interactions. Defaults to 3 (the paper's n).
        background: run re-alignments in a worker thread (True) or inline in ``observe`` (False).
            Defaults to True.

    Examples:
        >>> live = ContinualAlignment(agent, every=3)  # doctest: +SKIP
        >>> live.observe("Rate: Alien (1979)", "5")  # doctest: +SKIP
        >>> live.wait()  # doctest: +SKIP
    """

    def __init__(
        self,
        agent: PersonaAgent,
        *,
        aligner: PersonaAlignment | None = None,
        every: int = 3,
        background: bool = True,
    ) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        self.agent = agent
        self.aligner = aligner or PersonaAlignment()
        self.every = every
        self.background = background
        self.pending = 0
        self.alignments = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="personaagent-align")
        self._running: Future | None = None

    def observe(
        self, query: str, response: str, *, timestamp: datetime | None = None, metadata: dict | None = None
    ) -> AddReport:
        """Remember the interaction; start a re-alignment when ``every`` new ones have arrived."""
        report = self.agent.observe(query, response, timestamp=timestamp, metadata=metadata)
        with self._lock:
            self.pending += report.added
            due = self.pending >= self.every and (self._running is None or self._running.done())
            if due:
                self.pending = 0
                self._running = self._executor.submit(self.align_now) if self.background else None
        if due and not self.background:
            self.align_now()
        return report

    def align_now(self) -> None:
        """Recount the persona's facts, re-align on the latest interactions, store the result and
        swap it in for the agent.

        If the user's persona was changed meanwhile (a manual edit, a rollback), the aligned
        edit is dropped and the agent follows the stored persona instead.
        """
        agent = self.agent
        try:
            recounted = agent.with_recounted_facts()  # the counts of a history that has grown
            if recounted is not agent:
                recounted.commit_persona()
            aligned = self.aligner.compile(recounted)
            commit_aligned(aligned, traces_dir=self.aligner.traces_dir)
        except PersonaConflict as exc:
            logger.warning("user %r: continual alignment not stored: %s", agent.user_id, exc)
            stored = agent.stored_persona()
            if stored is not None:
                self.agent = agent.with_persona(stored)
            return
        # One assignment: an answer in flight finishes on the old agent, never on a mix of both.
        self.agent = aligned
        self.alignments += 1
        logger.info("user %r: continual alignment %d: %s", self.agent.user_id, self.alignments, aligned.alignment_result.status)

    def wait(self) -> None:
        """Block until a running re-alignment finishes (re-raising its error, if any)."""
        running = self._running
        if running is not None:
            running.result()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
