"""Metrics and answer parsers against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from personaagent.evaluation.metrics import (
    accuracy,
    macro_f1,
    mae,
    match_label,
    parse_rating,
    rmse,
    score_labels,
    score_ratings,
)

LABELS = ["POLITICS", "WORLD NEWS", "U.S. NEWS", "FOOD & DRINK"]


def test_accuracy_counts_unparsed_as_wrong() -> None:
    assert accuracy(["a", "a", "b", "c"], ["a", "b", "b", None]) == 0.5


def test_macro_f1_over_labels_in_gold_or_prediction() -> None:
    # a: tp=1 fp=0 fn=1 -> 2/3; b: tp=1 fp=1 fn=0 -> 2/3; c: tp=0 -> 0. None is no label.
    assert macro_f1(["a", "a", "b", "c"], ["a", "b", "b", None]) == pytest.approx(4 / 9)
    # A predicted label absent from gold joins the average with F1 0.
    assert macro_f1(["a", "a"], ["a", "z"]) == pytest.approx((2 / 3 + 0) / 2)
    assert macro_f1(["a", "b"], ["a", "b"]) == 1.0


def test_mae_and_rmse() -> None:
    assert mae([1.0, 3.0, 5.0], [2.0, 3.0, 3.0]) == pytest.approx(1.0)
    assert rmse([1.0, 3.0, 5.0], [2.0, 3.0, 3.0]) == pytest.approx(math.sqrt(5 / 3))


def test_metrics_reject_mismatched_or_empty_input() -> None:
    with pytest.raises(ValueError):
        accuracy(["a"], [])
    with pytest.raises(ValueError):
        mae([], [])


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("POLITICS", "POLITICS"),
        ("  politics. ", "POLITICS"),
        ('"World   News"', "WORLD NEWS"),
        ("Category: food & drink", "FOOD & DRINK"),
        ("It is U.S. NEWS, not politics", "U.S. NEWS"),  # earliest mention wins
        ("I think this is world news.", "WORLD NEWS"),
        ("geopolitics", None),  # a label inside another word does not count
        ("no idea", None),
        ("", None),
    ],
)
def test_match_label(answer: str, expected: str | None) -> None:
    assert match_label(answer, LABELS) == expected


def test_match_label_prefers_longest_label_at_same_position() -> None:
    assert match_label("world news", ["WORLD", "WORLD NEWS"]) == "WORLD NEWS"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4", 4.0), ("Rating: 3.5 stars", 3.5), ("7 out of 5", 5.0), ("0", 0.5), ("4/5", 4.0), ("five", None), ("", None)],
)
def test_parse_rating(text: str, expected: float | None) -> None:
    assert parse_rating(text, 0.5, 5.0) == expected


def test_score_labels_counts_parse_failures() -> None:
    scores = score_labels(["POLITICS", "WORLD NEWS"], ["politics", "dunno"], LABELS)
    assert scores.metrics["accuracy"] == 0.5
    assert scores.parse_failures == 1


def test_score_ratings_uses_fallback_for_unparsed_answers() -> None:
    scores = score_ratings(["4.0", "2.0"], ["5", "no clue"], (0.5, 5.0), [3.0, 3.0])
    # errors: |4-5| = 1 and |2-3| = 1 (the unparsed answer fell back to 3.0)
    assert scores.metrics == {"mae": pytest.approx(1.0), "rmse": pytest.approx(1.0)}
    assert scores.parse_failures == 1


def test_score_ratings_rejects_non_numeric_gold() -> None:
    with pytest.raises(ValueError, match="gold rating"):
        score_ratings(["great"], ["4"], (1.0, 5.0), [3.0])


def test_paired_comparison_counts_discordant_queries_and_brackets_the_difference() -> None:
    from personaagent.evaluation.metrics import paired_comparison

    # A right on 30 of 60, B right on 20; A alone right on 15, B alone on 5.
    a = [0.0] * 30 + [1.0] * 30
    b = [0.0] * 15 + [1.0] * 15 + [0.0] * 5 + [1.0] * 25
    result = paired_comparison("A", a, "B", b)
    assert (result.num_queries, result.a_better, result.b_better) == (60, 15, 5)
    assert result.mean_difference == pytest.approx(-10 / 60)
    assert result.ci_low < result.mean_difference < result.ci_high < 0
    assert result.significant
    same = paired_comparison("A", a, "A again", a)
    assert (same.mean_difference, same.ci_low, same.ci_high, same.significant) == (0.0, 0.0, 0.0, False)
    with pytest.raises(ValueError):
        paired_comparison("A", a, "B", b[:-1])


def test_rating_errors_are_the_per_query_terms_of_the_mae() -> None:
    from personaagent.evaluation.metrics import rating_errors

    golds, answers, fallbacks = ["4.0", "2.0", "5"], ["3.5", "no idea", "9"], [3.0, 3.0, 3.0]
    errors = rating_errors(golds, answers, (0.5, 5.0), fallbacks)
    assert errors == [0.5, 1.0, 0.0]  # unparsed -> its fallback 3.0; 9 clamps to 5.0
    assert sum(errors) / 3 == pytest.approx(score_ratings(golds, answers, (0.5, 5.0), fallbacks).metrics["mae"])
    with pytest.raises(ValueError, match="not a number"):
        rating_errors(["n/a"], ["3"], (0.5, 5.0), [3.0])
