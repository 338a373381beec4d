"""Write the small LaMP-style evaluation samples committed in data/ (run by maintainers only).

Usage:
    python scripts/make_samples.py SOURCE [--out data]

SOURCE holds ``huffpost/news_category.jsonl`` (HuffPost News Category v3) and ``movielens/``
(MovieLens ml-latest-small: ratings.csv, movies.csv, README.txt). The output is deterministic:
the same source gives byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
from pathlib import Path

from personaagent.evaluation.sources import DEFAULT_SEED, build_news_task, build_ratings_task
from personaagent.evaluation.tasks import Task

NUM_USERS = 40
NEWS_CAP = 60  # latest articles kept per author, so the news sample stays well under 1.5 MB
RATINGS_CAP = 80  # latest ratings kept per MovieLens user
MIN_NEWS = 20
MIN_RATINGS = 40


def sample(task: Task, cap: int) -> Task:
    """Keep NUM_USERS users, half from each split of the full task, and each one's latest ``cap`` items.

    Drawing dev and test users from the full task's own split keeps the sample consistent with
    it: a user who is a test user in the sample is a test user on the full data too.
    """
    rng = random.Random(DEFAULT_SEED)
    half = NUM_USERS // 2
    dev = tuple(rng.sample(task.dev_users, min(half, len(task.dev_users))))
    test = tuple(rng.sample(task.test_users, min(half, len(task.test_users))))
    histories = {user: task.histories[user][-cap:] for user in dev + test}
    return Task(task.spec, histories, dev, test, task.queries_per_user)


def write_task(task: Task, folder: Path, source: str, notes: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "name": task.spec.name,
        "kind": task.spec.kind,
        "description": task.spec.description,
        "labels": list(task.spec.labels),
        "rating_range": list(task.spec.rating_range) if task.spec.rating_range else None,
        "dev_users": list(task.dev_users),
        "test_users": list(task.test_users),
        "source": source,
        "notes": notes,
    }
    (folder / "task.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with (folder / "interactions.jsonl").open("w", encoding="utf-8") as handle:
        for user in task.users:
            for interaction in task.histories[user]:
                handle.write(interaction.model_dump_json() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="folder with huffpost/ and movielens/")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data")
    args = parser.parse_args()

    news = sample(build_news_task(args.source / "huffpost", min_articles=MIN_NEWS), NEWS_CAP)
    write_task(
        news,
        args.out / "news",
        "HuffPost News Category Dataset v3 (Misra 2022, arXiv:2209.11429), CC BY 4.0",
        f"{NUM_USERS} authors with >= {MIN_NEWS} articles, latest {NEWS_CAP} articles each; "
        "query = headline + short description, response = category",
    )

    ratings_task = build_ratings_task(args.source / "movielens", min_ratings=MIN_RATINGS)
    ratings = sample(ratings_task, RATINGS_CAP)
    write_task(
        ratings,
        args.out / "ratings",
        "MovieLens ml-latest-small (Harper & Konstan 2015), GroupLens research license",
        f"{NUM_USERS} users with >= {MIN_RATINGS} ratings, latest {RATINGS_CAP} ratings each; "
        "query = movie title and genres, response = rating",
    )
    movie_ids = {str(i.metadata["movie_id"]) for user in ratings.users for i in ratings.histories[user]}
    with (args.source / "movielens" / "movies.csv").open(encoding="utf-8", newline="") as src, (
        args.out / "ratings" / "movies.csv"
    ).open("w", encoding="utf-8", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=reader.fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for row in reader if row["movieId"] in movie_ids)
    shutil.copyfile(args.source / "movielens" / "README.txt", args.out / "ratings" / "LICENSE-MovieLens.txt")

    for task in (news, ratings):
        size = sum(f.stat().st_size for f in (args.out / task.name).iterdir())
        count = sum(len(h) for h in task.histories.values())
        print(f"{task.name}: {len(task.users)} users ({len(task.dev_users)} dev / {len(task.test_users)} test), "
              f"{count} interactions, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
