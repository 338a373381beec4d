"""Tasks: committed samples, time splits without leakage, disjoint users, builders from source files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import personaagent
import personaagent.data
from personaagent.errors import InvalidRecord, UnknownTask
from personaagent.evaluation.tasks import (
    TASK_NAMES,
    Task,
    TaskSpec,
    data_dir,
    group_by_user,
    load_examples,
    load_task,
)
from personaagent.evaluation.sources import build_news_task, build_ratings_task
from personaagent.records import Interaction


@pytest.mark.parametrize("name", TASK_NAMES)
@pytest.mark.parametrize("split", ["dev", "test"])
def test_sample_splits_are_by_time_without_leakage(name: str, split: str) -> None:
    task = load_task(name)
    examples = task.examples(split)
    assert len(examples) == 3 * len(task.users_of(split))
    for example in examples:
        assert example.profile, "every query has some history to personalize from"
        assert all(item.user_id == example.user_id for item in example.profile)
        assert all(item.timestamp <= example.timestamp for item in example.profile)
        assert example.example_id not in {item.interaction_id for item in example.profile}
        assert example.spec is task.spec


@pytest.mark.parametrize("name", TASK_NAMES)
def test_sample_dev_and_test_users_are_disjoint(name: str) -> None:
    task = load_task(name)
    assert len(task.dev_users) == len(task.test_users) == 20
    assert not set(task.dev_users) & set(task.test_users)
    assert set(task.users) == set(task.histories)


def test_profile_pool_never_holds_a_query() -> None:
    task = load_task("news")
    queries = {e.example_id for split in ("dev", "test") for e in task.examples(split)}
    assert queries.isdisjoint(i.interaction_id for i in task.profile_pool())


def test_sample_task_shapes() -> None:
    news, ratings = load_task("news"), load_task("ratings")
    assert news.spec.kind == "label" and len(news.spec.labels) == 29
    assert all(i.response in news.spec.labels for h in news.histories.values() for i in h)
    assert ratings.spec.kind == "rating" and ratings.spec.rating_range == (0.5, 5.0)
    example = ratings.examples("test")[0]
    assert example.query.startswith("Rate the movie: ") and "; genres: " in example.query
    assert {"movie_id", "genres"} <= set(example.metadata)
    assert 0.5 <= float(example.gold) <= 5.0


def test_selection_helpers() -> None:
    assert len(load_examples("news", "dev", num_users=2)) == 6
    assert len(load_examples("ratings", "test", num_users=3, queries_per_user=5)) == 15


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(UnknownTask, match="valid tasks: news, ratings"):
        load_task("lamp-9")


def test_missing_sample_folder_is_invalid_record(tmp_path: Path) -> None:
    with pytest.raises(InvalidRecord, match="task.json"):
        load_task("news", data_root=tmp_path)


def test_samples_ship_inside_the_package() -> None:
    assert data_dir() == Path(personaagent.data.__file__).parent
    assert (data_dir() / "README.md").is_file()
    assert (data_dir() / "ratings" / "LICENSE-MovieLens.txt").is_file()


def test_library_never_reads_the_maintainers_source_folder() -> None:
    package = Path(personaagent.__file__).parent
    for source in package.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert "/work/shared" not in text and "../shared" not in text, source


def test_users_with_too_little_history_are_skipped() -> None:
    spec = TaskSpec("t", "label", labels=("a",))
    interactions = [Interaction(user_id=u, query=f"q{n}", response="a") for u, n in [("u1", 1), ("u1", 2), ("u2", 1)]]
    task = Task(spec, group_by_user(interactions), dev_users=(), test_users=("u1", "u2"), queries_per_user=1)
    assert [e.user_id for e in task.examples("test")] == ["u1"]


def test_task_rejects_overlapping_splits() -> None:
    spec = TaskSpec("t", "label", labels=("a",))
    histories = group_by_user([Interaction(user_id="u", query="q", response="a")])
    with pytest.raises(ValueError, match="overlap"):
        Task(spec, histories, dev_users=("u",), test_users=("u",))


def test_build_news_task_from_source(tmp_path: Path) -> None:
    # HuffPost's file is newest first.
    def row(n: int, category: str, description: str, author: str, day: int) -> dict:
        return {"link": f"l{n}", "headline": f"H{n}", "category": category,
                "short_description": description, "authors": author, "date": f"2022-01-0{day}"}

    rows = [
        row(5, "SPORTS", "d5", "Ann", 3),
        row(4, "POLITICS", "", "Ann", 2),
        row(3, "POLITICS", "d3", "Ann", 2),
        row(2, "TRAVEL", "d2", "", 1),
        row(1, "TRAVEL", "d1", "Bob", 1),
    ]
    folder = tmp_path / "huffpost"
    folder.mkdir()
    (folder / "news_category.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")

    task = build_news_task(folder, min_articles=2, queries_per_user=1)
    assert task.spec.labels == ("POLITICS", "SPORTS", "TRAVEL")
    assert set(task.users) == {"Ann"}  # Bob has one article; empty authors are no user
    assert [i.metadata["headline"] for i in task.histories["Ann"]] == ["H3", "H4", "H5"]
    assert task.histories["Ann"][0].query == "H3\nd3"
    assert task.histories["Ann"][1].query == "H4"
    assert task.test_users == ("Ann",)  # one user: round(0.5) puts nobody in dev
    (example,) = task.examples("test")
    assert (example.query, example.gold) == ("H5\nd5", "SPORTS")
    assert example.metadata == {"headline": "H5", "link": "l5"}


def test_build_ratings_task_from_source(tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n1,Heat (1995),Action|Crime|Thriller\n2,\"Toy Story, The (1995)\",Animation\n",
        encoding="utf-8",
    )
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n"
        "1,2,3.5,200\n1,1,4.0,100\n1,2,5.0,300\n"
        "2,1,2.0,50\n2,2,1.0,60\n"
        "3,1,1.0,10\n",
        encoding="utf-8",
    )
    task = build_ratings_task(tmp_path, min_ratings=2, queries_per_user=1)
    assert set(task.users) == {"1", "2"}
    history = task.histories["1"]
    assert [i.response for i in history] == ["4.0", "3.5", "5.0"]
    assert history[0].query == "Rate the movie: Heat (1995); genres: Action|Crime|Thriller"
    assert history[0].metadata == {"movie_id": 1, "genres": "Action|Crime|Thriller"}
    assert task.spec.rating_range == (0.5, 5.0)


def test_the_data_readme_names_the_task_kinds_the_code_reads() -> None:
    import re
    from typing import get_args

    from personaagent.evaluation.tasks import TASK_NAMES, TaskKind

    readme = (data_dir() / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"kind \(((?:`\w+`(?: / )?)+)\)", readme)
    assert listed is not None, "data/README.md no longer lists the task kinds"
    documented = set(re.findall(r"`(\w+)`", listed.group(1)))
    assert documented == set(get_args(TaskKind))
    for name in TASK_NAMES:
        assert json.loads((data_dir() / name / "task.json").read_text(encoding="utf-8"))["kind"] in documented
