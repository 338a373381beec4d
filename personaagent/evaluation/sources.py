"""Building the LaMP-style tasks from the full source corpora (HuffPost news, MovieLens).

Only ``scripts/make_samples.py`` and ``scripts/run_baselines.py`` read the corpora; the committed
samples (``load_task``) were made from them with these builders.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from personaagent.errors import InvalidRecord
from personaagent.evaluation.tasks import Task, TaskSpec, group_by_user
from personaagent.records import Interaction, as_aware

__all__ = ["DEFAULT_SEED", "MOVIELENS_RANGE", "build_news_task", "build_ratings_task", "split_users"]

logger = logging.getLogger(__name__)

#: MovieLens ratings run from half a star to five stars.
MOVIELENS_RANGE = (0.5, 5.0)
#: Seed for every random choice of users, so samples and full-data tasks are reproducible.
DEFAULT_SEED = 2506


def split_users(users: Sequence[str], *, seed: int = DEFAULT_SEED, dev_fraction: float = 0.5) -> tuple[
    tuple[str, ...], tuple[str, ...]
]:
    """Shuffle ``users`` with ``seed`` and cut them into disjoint (dev, test) tuples."""
    shuffled = sorted(users)
    random.Random(seed).shuffle(shuffled)
    cut = round(len(shuffled) * dev_fraction)
    return tuple(shuffled[:cut]), tuple(shuffled[cut:])


def _news_query(headline: str, short_description: str) -> str:
    """The query text of a news article: headline, then the short description."""
    headline, short_description = headline.strip(), short_description.strip()
    return f"{headline}\n{short_description}" if short_description else headline


def _movie_query(title: str, genres: str) -> str:
    """The query text of a movie to rate."""
    return f"Rate the movie: {title}; genres: {genres}"


def _source_file(path: Path, filename: str) -> Path:
    path = Path(path)
    return path / filename if path.is_dir() else path


def build_news_task(
    path: Path, *, min_articles: int = 20, queries_per_user: int = 3, seed: int = DEFAULT_SEED
) -> Task:
    """LaMP-2N-style task from HuffPost's ``news_category.jsonl`` (a file or its folder).

    Users are ``authors`` strings with at least ``min_articles`` articles (empty authors are
    skipped); the label set is every category in the file.

    Raises:
        InvalidRecord: The file is missing or a line is malformed.
    """
    source = _source_file(path, "news_category.jsonl")
    rows: list[dict] = []
    try:
        with source.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if line.strip():
                    rows.append(json.loads(line))
    except OSError as exc:
        raise InvalidRecord(f"{source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"{source}: line {line_number}: {exc}") from None

    labels = tuple(sorted({row["category"] for row in rows}))
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        if row["authors"].strip():
            counts[row["authors"]] += 1
    users = {author for author, count in counts.items() if count >= min_articles}
    interactions: list[Interaction] = []
    # The file is newest first; reversed, it is oldest first, which orders same-day articles.
    for row in reversed(rows):
        if row["authors"] not in users:
            continue
        try:
            interactions.append(
                Interaction(
                    user_id=row["authors"],
                    query=_news_query(row["headline"], row["short_description"]),
                    response=row["category"],
                    timestamp=as_aware(row["date"]),
                    metadata={"headline": row["headline"], **({"link": row["link"]} if row.get("link") else {})},
                )
            )
        except (KeyError, ValueError, ValidationError) as exc:
            logger.warning("%s: skipping article %s: %s", source, row.get("link"), exc)
    spec = TaskSpec(
        name="news",
        kind="label",
        labels=labels,
        description="the HuffPost category this author filed the article under",
    )
    return _task(spec, interactions, users, seed=seed, queries_per_user=queries_per_user)


def build_ratings_task(
    path: Path, *, min_ratings: int = 40, queries_per_user: int = 3, seed: int = DEFAULT_SEED
) -> Task:
    """LaMP-3-style task from a MovieLens folder (``ratings.csv`` and ``movies.csv``).

    Users are MovieLens users with at least ``min_ratings`` ratings.

    Raises:
        InvalidRecord: A file is missing or a row is malformed.
    """
    folder = Path(path)
    movies = _read_csv(folder / "movies.csv")
    ratings = _read_csv(folder / "ratings.csv")
    try:
        titles = {row["movieId"]: (row["title"], row["genres"]) for row in movies}
        counts: dict[str, int] = defaultdict(int)
        for row in ratings:
            counts[row["userId"]] += 1
        users = {user for user, count in counts.items() if count >= min_ratings}
        # Ties in time (bulk rating sessions) are ordered by movie id so the split is reproducible.
        kept = sorted(
            (row for row in ratings if row["userId"] in users),
            key=lambda row: (row["userId"], int(row["timestamp"]), int(row["movieId"])),
        )
        interactions = []
        for row in kept:
            title, genres = titles[row["movieId"]]
            interactions.append(
                Interaction(
                    user_id=row["userId"],
                    query=_movie_query(title, genres),
                    response=row["rating"],
                    timestamp=datetime.fromtimestamp(int(row["timestamp"]), tz=timezone.utc),
                    metadata={"movie_id": int(row["movieId"]), "genres": genres},
                )
            )
    except (KeyError, ValueError, ValidationError) as exc:
        raise InvalidRecord(f"{folder}: malformed MovieLens row: {exc}") from None
    spec = TaskSpec(
        name="ratings",
        kind="rating",
        rating_range=MOVIELENS_RANGE,
        description="the star rating (0.5 to 5.0, in halves) this user gave the movie",
    )
    return _task(spec, interactions, users, seed=seed, queries_per_user=queries_per_user)


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError as exc:
        raise InvalidRecord(f"{path}: {exc}") from None


def _task(
    spec: TaskSpec, interactions: Iterable[Interaction], users: Iterable[str], *, seed: int, queries_per_user: int
) -> Task:
    dev, test = split_users(list(users), seed=seed)
    return Task(spec, group_by_user(interactions), dev, test, queries_per_user)
