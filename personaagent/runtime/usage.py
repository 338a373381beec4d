"""Counting LM calls, tokens and seconds for a block of DSPy work.

DSPy's ``track_usage`` sums tokens but not calls or time, so a callback counts those. Both are
context-scoped (DSPy settings are thread-local overrides), so meters of users compiled in
parallel threads never mix, and nested meters all see the calls inside them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback
from dspy.utils.usage_tracker import UsageTracker, track_usage

from personaagent.records import LMUsage

__all__ = ["UsageMeter", "metered", "token_counts"]


def token_counts(usage: dict[str, Any]) -> tuple[int, int]:
    """``(prompt, completion)`` tokens of a usage entry in OpenAI or lm15 names."""
    prompt = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
    completion = int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
    return prompt, completion


class UsageMeter(BaseCallback):
    """Counts LM calls and their wall-clock seconds; tokens come from the paired UsageTracker."""

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._tracker: UsageTracker | None = None

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        with self._lock:
            self.calls += 1
            self._started[call_id] = time.perf_counter()

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._lock:
            started = self._started.pop(call_id, None)
            if started is not None:
                self.seconds += time.perf_counter() - started

    @property
    def usage(self) -> LMUsage:
        prompt = completion = 0
        if self._tracker is not None:
            for totals in self._tracker.get_total_tokens().values():
                more_prompt, more_completion = token_counts(totals)
                prompt, completion = prompt + more_prompt, completion + more_completion
        return LMUsage(calls=self.calls, prompt_tokens=prompt, completion_tokens=completion, seconds=self.seconds)


@contextmanager
def metered() -> Iterator[UsageMeter]:
    """Meter every LM call made inside the block.

    Examples:
        >>> with metered() as meter:  # doctest: +SKIP
        ...     program(query="...")
        >>> meter.usage.calls  # doctest: +SKIP
        2
    """
    meter = UsageMeter()
    with track_usage() as tracker, dspy.context(callbacks=[*dspy.settings.get("callbacks", []), meter]):
        meter._tracker = tracker
        yield meter
