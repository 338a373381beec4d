"""Run a method over task examples and report its quality beside its cost.

Every method, baseline or LLM program, implements :class:`Method`: a ``name`` and
``predict(example) -> MethodAnswer``. A :class:`MethodAnswer` carries the answer text and the LM usage
spent on it, so the runner can report LM calls and tokens per query without knowing how the method
works. Seconds per query are wall-clock time measured by the runner, everything included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from personaagent.evaluation.metrics import (
    Scores,
    markdown_table,
    match_label,
    rating_errors,
    score_labels,
    score_ratings,
)
from personaagent.evaluation.tasks import TaskExample
from personaagent.records import EvalResult, LMUsage

__all__ = ["MethodAnswer", "Method", "run_method", "score_examples", "query_losses", "format_results_table"]

logger = logging.getLogger(__name__)

_METRIC_ORDER = ("accuracy", "macro_f1", "mae", "rmse")


@dataclass(frozen=True)
class MethodAnswer:
    """A method's answer to one example.

    Attributes:
        text: The answer as the method produced it; the runner parses it into a label or rating.
        usage: LM calls, tokens and seconds spent on this answer (zero for non-LLM methods).
    """

    text: str
    usage: LMUsage = field(default_factory=LMUsage)


@runtime_checkable
class Method(Protocol):
    """Anything that answers task examples.

    A method sees one example at a time: the query, the user's profile (only interactions before
    the query) and the task spec (kind, labels, rating range). It may keep per-user state, such
    as an aligned persona, across that user's queries.
    """

    @property
    def name(self) -> str:
        """Short name for result tables."""
        ...

    def predict(self, example: TaskExample) -> MethodAnswer:
        """Answer ``example.query`` for ``example.user_id``."""
        ...


def run_method(
    examples: Sequence[TaskExample],
    method: Method,
    *,
    on_prediction: Callable[[TaskExample, MethodAnswer], None] | None = None,
) -> EvalResult:
    """Answer every example with ``method`` and score the answers.

    Args:
        examples: the queries, all of one task.
        method: what answers them.
        on_prediction: called with each example and its prediction (e.g. to save them).

    Raises:
        ValueError: ``examples`` is empty or mixes tasks.
    """
    if not examples:
        raise ValueError("no examples to evaluate")
    spec = examples[0].spec
    if any(example.spec != spec for example in examples):
        raise ValueError("examples come from more than one task")
    answers: list[str] = []
    usage = LMUsage()
    started = time.perf_counter()
    for done, example in enumerate(examples, start=1):
        prediction = method.predict(example)
        if on_prediction is not None:
            on_prediction(example, prediction)
        answers.append(prediction.text)
        usage = usage + prediction.usage
        if done % 50 == 0:
            logger.info("%s on %s: %d/%d queries", method.name, spec.name, done, len(examples))
    elapsed = time.perf_counter() - started
    scores = score_examples(examples, answers)
    count = len(examples)
    return EvalResult(
        task=spec.name,
        method=method.name,
        num_users=len({example.user_id for example in examples}),
        num_queries=count,
        metrics=scores.metrics,
        lm_calls_per_query=usage.calls / count,
        tokens_per_query=usage.tokens / count,
        seconds_per_query=elapsed / count,
        parse_failures=scores.parse_failures,
    )


def score_examples(examples: Sequence[TaskExample], answers: Sequence[str]) -> Scores:
    """Metrics of free-text ``answers`` to ``examples`` (all from one task).

    For ratings, an unparseable answer falls back to the user's mean profile rating (the range's
    midpoint if the profile has no ratings) and counts as a parse failure.
    """
    spec = examples[0].spec
    golds = [example.gold for example in examples]
    if spec.kind == "label":
        return score_labels(golds, answers, spec.labels)
    assert spec.rating_range is not None  # TaskSpec guarantees it for rating tasks
    return score_ratings(golds, answers, spec.rating_range, [_mean_rating(e) for e in examples])


def query_losses(examples: Sequence[TaskExample], answers: Sequence[str]) -> list[float]:
    """Each answer's loss, parsed as :func:`score_examples` parses it: for labels 0 (right) or 1
    (wrong or unparseable); for ratings the absolute error (an unparseable answer falls back to
    the user's mean profile rating). Their mean is 1 - accuracy, or the MAE."""
    spec = examples[0].spec
    if spec.kind == "label":
        return [float(match_label(a, spec.labels) != e.gold) for e, a in zip(examples, answers, strict=True)]
    assert spec.rating_range is not None  # TaskSpec guarantees it for rating tasks
    golds = [example.gold for example in examples]
    return rating_errors(golds, answers, spec.rating_range, [_mean_rating(e) for e in examples])


def _mean_rating(example: TaskExample) -> float:
    low, high = example.spec.rating_range or (0.0, 0.0)
    values = []
    for interaction in example.profile:
        try:
            values.append(min(max(float(interaction.response), low), high))
        except ValueError:
            continue
    return sum(values) / len(values) if values else (low + high) / 2


def format_results_table(results: Iterable[EvalResult]) -> str:
    """A markdown table: one row per result, quality metrics then cost per query."""
    results = list(results)
    present = {name for result in results for name in result.metrics}
    metric_names = [name for name in _METRIC_ORDER if name in present] + sorted(present - set(_METRIC_ORDER))
    header = ["task", "method", "users", "queries", *metric_names, "parse fails", "LM calls/q", "tokens/q", "s/q"]
    rows = []
    for result in results:
        rows.append(
            [
                result.task,
                result.method,
                str(result.num_users),
                str(result.num_queries),
                *(f"{result.metrics[name]:.3f}" if name in result.metrics else "-" for name in metric_names),
                str(result.parse_failures),
                f"{result.lm_calls_per_query:.2f}",
                f"{result.tokens_per_query:.0f}",
                f"{result.seconds_per_query:.4f}",
            ]
        )
    return markdown_table(header, rows)
