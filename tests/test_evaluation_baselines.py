"""Baselines and the runner: hand-computed answers on tiny tasks, then every baseline on the samples."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from personaagent.evaluation.baselines import (
    GlobalMajority,
    GlobalMean,
    ItemUserBias,
    KnnRating,
    KnnVote,
    UserMajority,
    UserMean,
    baselines_for,
    tfidf_embed,
)
from personaagent.evaluation.runner import Method, MethodAnswer, format_results_table, run_method
from personaagent.evaluation.tasks import TASK_NAMES, Task, TaskSpec, group_by_user, load_task
from personaagent.records import Interaction, LMUsage

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
LABELS = TaskSpec("tiny", "label", labels=("A", "B"))
STARS = TaskSpec("stars", "rating", rating_range=(0.5, 5.0))


def _at(day: int) -> datetime:
    return T0 + timedelta(days=day)


def _task(spec: TaskSpec, rows: list[tuple[str, str, str, int]], **meta: dict) -> Task:
    interactions = [
        Interaction(user_id=u, query=q, response=r, timestamp=_at(d), metadata=meta.get(q, {})) for u, q, r, d in rows
    ]
    histories = group_by_user(interactions)
    return Task(spec, histories, dev_users=(), test_users=tuple(histories), queries_per_user=1)


CLASSIFICATION = _task(
    LABELS,
    [
        ("u1", "apple banana", "A", 1),
        ("u1", "apple cherry", "A", 2),
        ("u1", "dog cat", "B", 3),
        ("u1", "cat dog bird", "?", 4),  # u1's query
        ("u2", "stock market", "B", 1),
        ("u2", "bond market", "B", 2),
        ("u2", "zebra", "?", 3),  # u2's query
        ("u3", "one", "A", 1),
        ("u3", "two", "B", 2),
        ("u3", "three", "?", 3),  # u3's query
    ],
)


def _answers(method: Method, task: Task) -> dict[str, str]:
    return {e.user_id: method.predict(e).text for e in task.examples("test")}


def test_global_majority_fits_on_profiles_only() -> None:
    # Profiles hold A x3 and B x4; the "?" queries are not in the pool.
    method = GlobalMajority.fit(CLASSIFICATION.profile_pool())
    assert method.label == "B"
    assert set(_answers(method, CLASSIFICATION).values()) == {"B"}


def test_user_majority_breaks_ties_by_recency() -> None:
    # u1: A,A,B -> A; u2: B,B -> B; u3: A,B tie -> B, the more recent.
    assert _answers(UserMajority("B"), CLASSIFICATION) == {"u1": "A", "u2": "B", "u3": "B"}


def test_knn_vote_uses_most_similar_profile_items() -> None:
    # u1's query shares "cat dog" only with the B item; u2's "zebra" shares nothing, so the user
    # majority decides; u3's "three" shares nothing either, so the more recent tie-break applies.
    assert _answers(KnnVote("A", k=3), CLASSIFICATION) == {"u1": "B", "u2": "B", "u3": "B"}
    assert _answers(UserMajority("A"), CLASSIFICATION)["u1"] == "A"  # kNN differs from majority


def test_knn_accepts_a_pluggable_embedder() -> None:
    def by_first_letter(texts: list[str]) -> np.ndarray:
        return np.array([[1.0, 0.0] if t[0] in "ac" else [0.0, 1.0] for t in texts])

    # This embedder puts u1's query "cat dog bird" next to the "apple ..." items (A), where
    # TF-IDF put it next to "dog cat" (B).
    assert _answers(KnnVote("B", k=1, embed=by_first_letter), CLASSIFICATION)["u1"] == "A"


def test_tfidf_embed_is_unit_length_and_handles_empty_text() -> None:
    vectors = tfidf_embed(["a b", "b c", ""])
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0)
    assert not vectors[2].any()
    assert vectors[0] @ vectors[1] > 0


RATINGS = _task(
    STARS,
    [
        ("u1", "m1", "4.0", 1),
        ("u1", "m2", "5.0", 2),
        ("u1", "m3", "1.0", 10),  # u1's query, at day 10
        ("u2", "m3", "3.0", 5),  # before u1's query: may inform m3's mean
        ("u2", "m9", "1.0", 6),  # u2's query
        ("u3", "m3", "0.5", 20),  # after u1's query: must not
        ("u3", "m4", "2.5", 21),  # u3's query
    ],
    m1={"movie_id": 1},
    m2={"movie_id": 2},
    m3={"movie_id": 3},
    m4={"movie_id": 4},
    m9={"movie_id": 9},
)


def test_rating_means() -> None:
    pool = RATINGS.profile_pool()  # 4.0, 5.0, 3.0, 0.5
    assert GlobalMean.fit(pool).mean == pytest.approx(3.125)
    assert _answers(UserMean(3.125), RATINGS) == {"u1": "4.500", "u2": "3.000", "u3": "0.500"}


def test_item_mean_uses_only_other_users_earlier_ratings() -> None:
    method = ItemUserBias.fit(RATINGS.profile_pool(), item_shrinkage=1.0, user_shrinkage=1.0)
    mu = 3.125
    # u1 on m3: only u2's 3.0 (day 5) counts, not u3's 0.5 (day 20).
    item_bias = (3.0 - mu) / (1 + 1)
    user_bias = ((4.0 - mu) + (5.0 - mu)) / (2 + 1)
    answer = float(method.predict(RATINGS.examples("test")[0]).text)
    assert answer == pytest.approx(mu + item_bias + user_bias, abs=1e-3)


def test_knn_rating() -> None:
    spec_task = _task(
        STARS,
        [
            ("u", "Rate the movie: A; genres: Action", "5.0", 1),
            ("u", "Rate the movie: B; genres: Drama", "1.0", 2),
            ("u", "Rate the movie: C; genres: Action", "?", 3),
        ],
    )
    # Only the Action movie shares a distinctive word; with k=1 it decides alone.
    assert _answers(KnnRating(3.0, k=1), spec_task) == {"u": "5.000"}


def test_baselines_for_matches_the_task_kind() -> None:
    assert [m.name for m in baselines_for(LABELS, CLASSIFICATION.profile_pool())] == [
        "global majority",
        "user majority",
        "kNN vote (k=5)",
    ]
    assert len(baselines_for(STARS, RATINGS.profile_pool())) == 4


class _FakeLLM:
    """An LLM-like method that spends usage and sometimes answers unparseably."""

    name = "fake llm"

    def predict(self, example) -> MethodAnswer:
        text = "Answer: A" if example.user_id != "u2" else "I cannot tell"
        return MethodAnswer(text, LMUsage(calls=2, prompt_tokens=100, completion_tokens=20, seconds=0.5))


def test_runner_reports_quality_cost_and_parse_failures() -> None:
    golds = {"u1": "B", "u2": "B", "u3": "A"}
    examples = [replace(e, gold=golds[e.user_id]) for e in CLASSIFICATION.examples("test")]
    assert isinstance(_FakeLLM(), Method)
    result = run_method(examples, _FakeLLM())
    assert result.num_users == 3 and result.num_queries == 3
    assert result.metrics["accuracy"] == pytest.approx(1 / 3)
    assert result.parse_failures == 1
    assert result.lm_calls_per_query == 2 and result.tokens_per_query == 120
    table = format_results_table([result])
    assert table.splitlines()[0].startswith("| task | method | users | queries | accuracy | macro_f1 |")
    assert "| tiny | fake llm | 3 | 3 | 0.333 |" in table


def test_runner_rating_fallback_is_the_users_mean() -> None:
    class Silent:
        name = "silent"

        def predict(self, example) -> MethodAnswer:
            return MethodAnswer("no idea")

    examples = RATINGS.examples("test")  # golds 1.0, 1.0, 2.5; user means 4.5, 3.0, 0.5
    result = run_method(examples, Silent())
    assert result.parse_failures == 3
    assert result.metrics["mae"] == pytest.approx((3.5 + 2.0 + 2.0) / 3)


def test_runner_rejects_empty_or_mixed_examples() -> None:
    with pytest.raises(ValueError):
        run_method([], GlobalMean(3.0))
    with pytest.raises(ValueError, match="more than one task"):
        run_method(CLASSIFICATION.examples("test") + RATINGS.examples("test"), GlobalMean(3.0))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_baseline_runs_on_the_samples(name: str) -> None:
    task = load_task(name)
    examples = task.examples("test")
    results = [run_method(examples, method) for method in baselines_for(task.spec, task.profile_pool())]
    assert all(r.parse_failures == 0 and r.lm_calls_per_query == 0 for r in results)
    if name == "news":
        # The profiles carry personal signal: the user's own majority beats the global one.
        by_name = {r.method: r.metrics["accuracy"] for r in results}
        assert by_name["user majority"] > by_name["global majority"]
