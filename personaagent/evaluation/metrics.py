"""Metrics of LaMP's evaluation, and parsers that turn a free-text answer into a label or rating.

Classification: accuracy and macro-F1 (averaged over the labels present in gold or prediction,
as LaMP's evaluation does). Rating: MAE and RMSE. An answer that cannot be parsed counts as a
parse failure: for classification it is simply wrong; for ratings it is replaced by a fallback
(see :func:`score_ratings`) so MAE stays comparable across methods that fail on different queries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from personaagent.records import match_label

__all__ = [
    "accuracy",
    "macro_f1",
    "mae",
    "rmse",
    "match_label",
    "parse_rating",
    "Scores",
    "score_labels",
    "score_ratings",
]

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def accuracy(golds: Sequence[str], preds: Sequence[str | None]) -> float:
    """Share of predictions equal to the gold label; ``None`` (unparsed) is wrong."""
    _check_lengths(golds, preds)
    return sum(g == p for g, p in zip(golds, preds)) / len(golds)


def macro_f1(golds: Sequence[str], preds: Sequence[str | None]) -> float:
    """Mean per-label F1 over the labels present in gold or prediction (``None`` is no label).

    A label with no true positives scores 0, like sklearn's ``zero_division=0``.
    """
    _check_lengths(golds, preds)
    labels = set(golds) | {p for p in preds if p is not None}
    total = 0.0
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(golds, preds))
        fp = sum(g != label and p == label for g, p in zip(golds, preds))
        fn = sum(g == label and p != label for g, p in zip(golds, preds))
        total += 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return total / len(labels)


def mae(golds: Sequence[float], preds: Sequence[float]) -> float:
    """Mean absolute error."""
    _check_lengths(golds, preds)
    return sum(abs(g - p) for g, p in zip(golds, preds)) / len(golds)


def rmse(golds: Sequence[float], preds: Sequence[float]) -> float:
    """Root mean squared error."""
    _check_lengths(golds, preds)
    return math.sqrt(sum((g - p) ** 2 for g, p in zip(golds, preds)) / len(golds))


def _check_lengths(golds: Sequence, preds: Sequence) -> None:
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} golds but {len(preds)} predictions")
    if not golds:
        raise ValueError("no examples to score")


def parse_rating(text: str, low: float, high: float) -> float | None:
    """The first number in ``text``, clamped to ``[low, high]``; ``None`` if there is none."""
    match = _NUMBER.search(text)
    if match is None:
        return None
    return min(max(float(match.group()), low), high)


@dataclass(frozen=True)
class Scores:
    """Metric values and how many answers could not be parsed."""

    metrics: dict[str, float]
    parse_failures: int


def score_labels(golds: Sequence[str], answers: Sequence[str], labels: Sequence[str]) -> Scores:
    """Accuracy and macro-F1 of free-text ``answers``; an unparseable answer is wrong."""
    preds = [match_label(answer, labels) for answer in answers]
    return Scores(
        metrics={"accuracy": accuracy(golds, preds), "macro_f1": macro_f1(golds, preds)},
        parse_failures=sum(p is None for p in preds),
    )


def score_ratings(
    golds: Sequence[str],
    answers: Sequence[str],
    rating_range: tuple[float, float],
    fallbacks: Sequence[float],
) -> Scores:
    """MAE and RMSE of free-text ``answers``.

    An unparseable answer is replaced by its entry in ``fallbacks`` (the runner passes the user's
    mean profile rating, which is itself a baseline, so a method gains nothing by failing) and
    counted in ``parse_failures``.

    Raises:
        ValueError: A gold rating is not a number.
    """
    low, high = rating_range
    gold_values = []
    for gold in golds:
        value = parse_rating(gold, low, high)
        if value is None:
            raise ValueError(f"gold rating {gold!r} is not a number")
        gold_values.append(value)
    parsed = [parse_rating(answer, low, high) for answer in answers]
    preds = [value if value is not None else fallback for value, fallback in zip(parsed, fallbacks)]
    return Scores(
        metrics={"mae": mae(gold_values, preds), "rmse": rmse(gold_values, preds)},
        parse_failures=sum(p is None for p in parsed),
    )
