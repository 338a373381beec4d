"""Plain non-LLM baselines: the numbers a personalized LLM method has to beat.

Classification: the global majority label, the user's majority label, and a k-nearest-neighbour
vote over the user's own profile. Ratings: the global mean, the user's mean, the item's mean plus
the user's bias, and a k-nearest-neighbour weighted mean of the user's own ratings.

Baselines fit on a *pool* of interactions (``Task.profile_pool()``: every user's profile, never a
held-out query), and per query look only at that query's profile, so no gold answer leaks in.
Similarity uses a pluggable ``embed`` function; the default is TF-IDF cosine in numpy, so the
baselines run without any model.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from personaagent.evaluation.runner import Method, MethodAnswer
from personaagent.evaluation.tasks import TaskExample, TaskSpec
from personaagent.records import Interaction

__all__ = [
    "EmbedFn",
    "tfidf_embed",
    "GlobalMajority",
    "UserMajority",
    "KnnVote",
    "GlobalMean",
    "UserMean",
    "ItemUserBias",
    "KnnRating",
    "baselines_for",
]

#: Maps texts to one row vector each; rows are compared by cosine similarity.
EmbedFn = Callable[[list[str]], np.ndarray]

_TOKEN = re.compile(r"[^\W_]+")


def tfidf_embed(texts: list[str]) -> np.ndarray:
    """L2-normalised TF-IDF vectors (sublinear tf, smoothed idf) fitted on ``texts`` themselves."""
    docs = [_TOKEN.findall(text.casefold()) for text in texts]
    vocabulary = {token: index for index, token in enumerate(sorted({t for doc in docs for t in doc}))}
    matrix = np.zeros((len(texts), max(len(vocabulary), 1)))
    for row, doc in enumerate(docs):
        for token, count in Counter(doc).items():
            matrix[row, vocabulary[token]] = 1.0 + math.log(count)
    document_frequency = (matrix > 0).sum(axis=0)
    matrix *= np.log((1 + len(texts)) / (1 + document_frequency)) + 1.0
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _similarities(embed: EmbedFn, query: str, profile: Sequence[Interaction]) -> np.ndarray:
    vectors = np.asarray(embed([item.query for item in profile] + [query]), dtype=float)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    unit = vectors / norms[:, None]
    return unit[:-1] @ unit[-1]


def _majority(labels: Sequence[str]) -> str | None:
    """Most frequent label; a tie goes to the label used most recently (labels are oldest first)."""
    if not labels:
        return None
    counts = Counter(labels)
    best = max(counts.values())
    return next(label for label in reversed(labels) if counts[label] == best)


def _rating(interaction: Interaction) -> float | None:
    try:
        value = float(interaction.response)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _ratings(interactions: Sequence[Interaction]) -> list[float]:
    return [value for value in map(_rating, interactions) if value is not None]


def _format_rating(value: float, spec: TaskSpec) -> str:
    low, high = spec.rating_range or (value, value)
    return f"{min(max(value, low), high):.3f}"


# --- Classification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GlobalMajority:
    """The most frequent label in the pool, for everyone."""

    label: str
    name: str = "global majority"

    @classmethod
    def fit(cls, pool: Sequence[Interaction]) -> GlobalMajority:
        # Sorted first so a tie is broken the same way on every run.
        label = Counter(sorted(item.response for item in pool)).most_common(1)
        if not label:
            raise ValueError("the pool is empty")
        return cls(label[0][0])

    def predict(self, example: TaskExample) -> MethodAnswer:
        return MethodAnswer(self.label)


@dataclass(frozen=True)
class UserMajority:
    """The user's most frequent profile label (the global majority for an empty profile)."""

    fallback: str
    name: str = "user majority"

    def predict(self, example: TaskExample) -> MethodAnswer:
        label = _majority([item.response for item in example.profile])
        return MethodAnswer(label if label is not None else self.fallback)


@dataclass(frozen=True)
class KnnVote:
    """Similarity-weighted vote of the ``k`` profile items most similar to the query.

    Falls back to the user's majority label when no profile item shares anything with the query.
    """

    fallback: str
    k: int = 5
    embed: EmbedFn = field(default=tfidf_embed, repr=False)

    @property
    def name(self) -> str:
        return f"kNN vote (k={self.k})"

    def predict(self, example: TaskExample) -> MethodAnswer:
        profile = example.profile
        if not profile:
            return MethodAnswer(self.fallback)
        majority = _majority([item.response for item in profile])
        similarities = _similarities(self.embed, example.query, profile)
        votes: dict[str, float] = defaultdict(float)
        for index in np.argsort(-similarities, kind="stable")[: self.k]:
            if similarities[index] > 0:
                votes[profile[index].response] += float(similarities[index])
        if not votes:
            return MethodAnswer(majority if majority is not None else self.fallback)
        return MethodAnswer(max(votes, key=lambda label: (votes[label], label == majority)))


# --- Ratings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GlobalMean:
    """The mean rating of the pool, for everyone."""

    mean: float
    name: str = "global mean"

    @classmethod
    def fit(cls, pool: Sequence[Interaction]) -> GlobalMean:
        values = _ratings(pool)
        if not values:
            raise ValueError("the pool has no numeric ratings")
        return cls(sum(values) / len(values))

    def predict(self, example: TaskExample) -> MethodAnswer:
        return MethodAnswer(_format_rating(self.mean, example.spec))


@dataclass(frozen=True)
class UserMean:
    """The mean of the user's profile ratings (the global mean for an empty profile)."""

    fallback: float
    name: str = "user mean"

    def predict(self, example: TaskExample) -> MethodAnswer:
        values = _ratings(example.profile)
        return MethodAnswer(_format_rating(sum(values) / len(values) if values else self.fallback, example.spec))


def _item_key(interaction: Interaction | TaskExample) -> str:
    # MovieLens items carry their movie id; elsewhere the query text names the item.
    movie_id = interaction.metadata.get("movie_id")
    return f"movie:{movie_id}" if movie_id is not None else f"query:{interaction.query}"


@dataclass(frozen=True)
class ItemUserBias:
    """Shrunk item mean plus the user's shrunk bias: ``mu + b_i + b_u``.

    ``b_i`` averages other users' deviations from the global mean ``mu`` on the item, using only
    pool ratings made before the query (so neither the query's rating nor the future leaks in),
    shrunk toward 0 by ``item_shrinkage`` pseudo-ratings. ``b_u`` does the same over the user's
    profile with ``user_shrinkage``.
    """

    mean: float
    item_ratings: dict[str, list[tuple[datetime | None, str, float]]] = field(repr=False)
    item_shrinkage: float = 5.0
    user_shrinkage: float = 5.0
    name: str = "item mean + user bias"

    @classmethod
    def fit(
        cls, pool: Sequence[Interaction], *, item_shrinkage: float = 5.0, user_shrinkage: float = 5.0
    ) -> ItemUserBias:
        item_ratings: dict[str, list[tuple[datetime | None, str, float]]] = defaultdict(list)
        for item in pool:
            value = _rating(item)
            if value is not None:
                item_ratings[_item_key(item)].append((item.timestamp, item.user_id, value))
        return cls(GlobalMean.fit(pool).mean, dict(item_ratings), item_shrinkage, user_shrinkage)

    def predict(self, example: TaskExample) -> MethodAnswer:
        cutoff = example.timestamp
        others = [
            value
            for moment, user_id, value in self.item_ratings.get(_item_key(example), ())
            if user_id != example.user_id and (cutoff is None or moment is None or moment < cutoff)
        ]
        item_bias = sum(v - self.mean for v in others) / (len(others) + self.item_shrinkage)
        own = _ratings(example.profile)
        user_bias = sum(v - self.mean for v in own) / (len(own) + self.user_shrinkage)
        return MethodAnswer(_format_rating(self.mean + item_bias + user_bias, example.spec))


@dataclass(frozen=True)
class KnnRating:
    """Similarity-weighted mean rating of the ``k`` profile items most similar to the query.

    Falls back to the user's mean when no profile item shares anything with the query.
    """

    fallback: float
    k: int = 5
    embed: EmbedFn = field(default=tfidf_embed, repr=False)

    @property
    def name(self) -> str:
        return f"kNN rating (k={self.k})"

    def predict(self, example: TaskExample) -> MethodAnswer:
        rated = [(item, value) for item in example.profile if (value := _rating(item)) is not None]
        if not rated:
            return MethodAnswer(_format_rating(self.fallback, example.spec))
        similarities = _similarities(self.embed, example.query, [item for item, _ in rated])
        top = [i for i in np.argsort(-similarities, kind="stable")[: self.k] if similarities[i] > 0]
        if top:
            weights = similarities[top]
            value = float(np.dot(weights, [rated[i][1] for i in top]) / weights.sum())
        else:
            value = sum(v for _, v in rated) / len(rated)
        return MethodAnswer(_format_rating(value, example.spec))


def baselines_for(spec: TaskSpec, pool: Sequence[Interaction], *, embed: EmbedFn = tfidf_embed, k: int = 5) -> list[
    Method
]:
    """Every baseline that fits ``spec``'s kind, fitted on ``pool``.

    Args:
        spec: The task.
        pool: Interactions the baselines may learn global statistics from; must not contain the
            queries they will be asked (use ``Task.profile_pool()``).
        embed: Text embedder for the kNN baselines.
        k: Neighbours for the kNN baselines.
    """
    if spec.kind == "label":
        majority = GlobalMajority.fit(pool)
        return [majority, UserMajority(majority.label), KnnVote(majority.label, k=k, embed=embed)]
    mean = GlobalMean.fit(pool)
    return [mean, UserMean(mean.mean), ItemUserBias.fit(pool), KnnRating(mean.mean, k=k, embed=embed)]
