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
    "rating_errors",
    "PairedComparison",
    "paired_comparison",
    "format_paired_table",
    "markdown_table",
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
    gold_values, preds, failures = _rating_values(golds, answers, rating_range, fallbacks)
    return Scores(
        metrics={"mae": mae(gold_values, preds), "rmse": rmse(gold_values, preds)},
        parse_failures=failures,
    )


def rating_errors(
    golds: Sequence[str],
    answers: Sequence[str],
    rating_range: tuple[float, float],
    fallbacks: Sequence[float],
) -> list[float]:
    """Each answer's absolute error, parsed as :func:`score_ratings` parses it (their mean is
    the MAE).

    Raises:
        ValueError: A gold rating is not a number.
    """
    gold_values, preds, _failures = _rating_values(golds, answers, rating_range, fallbacks)
    return [abs(pred - gold) for gold, pred in zip(gold_values, preds)]


def _rating_values(
    golds: Sequence[str], answers: Sequence[str], rating_range: tuple[float, float], fallbacks: Sequence[float]
) -> tuple[list[float], list[float], int]:
    """Gold and predicted ratings (an unparseable answer replaced by its fallback) and how many
    answers did not parse."""
    low, high = rating_range
    gold_values = []
    for gold in golds:
        value = parse_rating(gold, low, high)
        if value is None:
            raise ValueError(f"gold rating {gold!r} is not a number")
        gold_values.append(value)
    parsed = [parse_rating(answer, low, high) for answer in answers]
    preds = [value if value is not None else fallback for value, fallback in zip(parsed, fallbacks)]
    return gold_values, preds, sum(p is None for p in parsed)


@dataclass(frozen=True)
class PairedComparison:
    """Two methods compared on the same queries, query by query.

    ``losses`` are per-query: 0/1 errors for labels (so the mean is 1 - accuracy) or absolute
    errors for ratings (so the mean is MAE). The difference is ``mean(loss_a - loss_b)``:
    negative means method A is better. Its 95% interval is the normal approximation over the
    paired per-query differences (for 0/1 losses this is the Wald interval of McNemar's design),
    adequate from about 30 queries on; below that, read the win counts, not the interval.

    Attributes:
        method_a, method_b: The methods' names.
        num_queries: Queries both answered (the same queries).
        a_better: Queries where A's loss is lower (labels: A right, B wrong).
        b_better: Queries where B's loss is lower.
        mean_difference: ``mean(loss_a - loss_b)``.
        ci_low, ci_high: The 95% interval of ``mean_difference``.
    """

    method_a: str
    method_b: str
    num_queries: int
    a_better: int
    b_better: int
    mean_difference: float
    ci_low: float
    ci_high: float

    @property
    def significant(self) -> bool:
        """True when the 95% interval excludes 0."""
        return self.ci_low > 0 or self.ci_high < 0


def paired_comparison(
    method_a: str, losses_a: Sequence[float], method_b: str, losses_b: Sequence[float]
) -> PairedComparison:
    """Compare two methods' per-query losses on the same queries (see :class:`PairedComparison`).

    Raises:
        ValueError: The loss lists differ in length or are empty.
    """
    _check_lengths(losses_a, losses_b)
    differences = [a - b for a, b in zip(losses_a, losses_b)]
    n = len(differences)
    mean = sum(differences) / n
    variance = sum((d - mean) ** 2 for d in differences) / (n - 1) if n > 1 else 0.0
    half_width = 1.96 * math.sqrt(variance / n)
    return PairedComparison(
        method_a=method_a,
        method_b=method_b,
        num_queries=n,
        a_better=sum(d < 0 for d in differences),
        b_better=sum(d > 0 for d in differences),
        mean_difference=mean,
        ci_low=mean - half_width,
        ci_high=mean + half_width,
    )


def format_paired_table(comparisons: Sequence[PairedComparison], *, loss_name: str) -> str:
    """A markdown table of paired comparisons, one row each.

    Args:
        comparisons: The comparisons.
        loss_name: What the per-query loss is, for the header (e.g. ``"error rate"``, ``"MAE"``).
    """
    header = ["A", "B", "queries", "A better", "B better", f"{loss_name} A - B", "95% interval", "significant"]
    rows = []
    for c in comparisons:
        rows.append(
            [
                c.method_a,
                c.method_b,
                str(c.num_queries),
                str(c.a_better),
                str(c.b_better),
                f"{c.mean_difference:+.3f}",
                f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}]",
                "yes" if c.significant else "no",
            ]
        )
    return markdown_table(header, rows)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table of text cells: the header, its rule, then one line per row."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
