"""LaMP-style evaluation tasks: each user's history, split by time into a profile and queries.

A task holds every user's interactions in time order and a fixed assignment of users to ``dev``
and ``test``. Quality is judged on users the method never saw: anything tuned (prompts, k,
thresholds) uses dev users only; reported numbers use test users.

Per user, the latest ``queries_per_user`` interactions are the queries and everything earlier is
the profile, shared by that user's queries. Alignment therefore only ever sees interactions from
before the query, and one persona per user serves all of that user's queries.

Two tasks ship with personaagent as small samples (see ``data/README.md``):

* ``news``: LaMP-2N-style personalized news categorization (HuffPost authors; label = category).
* ``ratings``: LaMP-3-style personalized rating prediction (MovieLens users; label = stars).

``personaagent.evaluation.sources`` builds the same tasks from the full source corpora.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from personaagent._files import unreadable_reason
from personaagent.errors import InvalidRecord, UnknownTask
from personaagent.records import AnswerFormat, Interaction, EARLIEST, MetadataValue, as_aware

__all__ = [
    "TASK_NAMES",
    "TaskKind",
    "Split",
    "TaskSpec",
    "TaskExample",
    "Task",
    "data_dir",
    "load_task",
    "load_examples",
    "group_by_user",
]

logger = logging.getLogger(__name__)

TASK_NAMES = ("news", "ratings")
TaskKind = Literal["label", "rating"]
Split = Literal["dev", "test"]



@dataclass(frozen=True)
class TaskSpec:
    """What a method needs to know about a task to answer its queries.

    Attributes:
        name: Task name, e.g. ``"news"`` or ``"LaMP-3"``.
        kind: ``"label"`` (the answer is one of ``labels``) or ``"rating"`` (a number): the
            names ``AnswerFormat.kind`` uses.
        labels: Allowed answers of a label task; empty for ratings.
        rating_range: ``(lowest, highest)`` rating of a rating task; ``None`` for labels.
        description: One line on what is predicted, usable in a prompt.
    """

    name: str
    kind: TaskKind
    labels: tuple[str, ...] = ()
    rating_range: tuple[float, float] | None = None
    description: str = ""

    @property
    def answer_format(self) -> AnswerFormat:
        """What an agent's answer must look like: one of the labels, or a rating in the range."""
        if self.kind == "label":
            return AnswerFormat(kind="label", labels=self.labels)
        low, high = self.rating_range  # type: ignore[misc]  # __post_init__ guarantees a range
        return AnswerFormat(kind="rating", min_rating=low, max_rating=high)

    def __post_init__(self) -> None:
        if self.kind not in ("label", "rating"):
            raise ValueError(f"task {self.name!r}: kind must be 'label' or 'rating', got {self.kind!r}")
        if self.kind == "label" and not self.labels:
            raise ValueError(f"label task {self.name!r} needs labels")
        if self.kind == "rating" and self.rating_range is None:
            raise ValueError(f"rating task {self.name!r} needs a rating_range")


@dataclass(frozen=True)
class TaskExample:
    """One query to answer for one user, with that user's earlier history as the profile.

    Attributes:
        user_id: Whose query this is.
        query: The input, e.g. an article to categorize or a movie to rate.
        gold: The user's true response (label, or rating as text).
        profile: The user's interactions before the query, oldest first.
        metadata: Extra fields of the query (link, movie id, ...).
        timestamp: When the query happened, if known.
        example_id: Stable id of this example.
        spec: The task the example belongs to.
    """

    user_id: str
    query: str
    gold: str
    profile: tuple[Interaction, ...]
    spec: TaskSpec
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    timestamp: datetime | None = None
    example_id: str = ""

    def __post_init__(self) -> None:
        # A naive time is read as UTC, as everywhere (records.as_aware), so cut-offs compare.
        object.__setattr__(self, "timestamp", as_aware(self.timestamp))

    def as_interaction(self) -> Interaction:
        """The query with its gold response, as an Interaction (e.g. to store after answering)."""
        return Interaction(
            user_id=self.user_id,
            query=self.query,
            response=self.gold,
            timestamp=self.timestamp,
            metadata=dict(self.metadata),
        )


@dataclass(frozen=True)
class Task:
    """A task's users, their time-ordered interactions, and the dev/test user split.

    Attributes:
        spec: Name, kind and labels of the task.
        histories: Each user's interactions, oldest first.
        dev_users: Users for tuning.
        test_users: Users for reported numbers; disjoint from ``dev_users``.
        queries_per_user: How many of each user's latest interactions are held out as queries.
    """

    spec: TaskSpec
    histories: Mapping[str, tuple[Interaction, ...]]
    dev_users: tuple[str, ...]
    test_users: tuple[str, ...]
    queries_per_user: int = 3

    def __post_init__(self) -> None:
        overlap = set(self.dev_users) & set(self.test_users)
        if overlap:
            raise ValueError(f"dev and test users overlap: {sorted(overlap)[:5]}")
        missing = (set(self.dev_users) | set(self.test_users)) - set(self.histories)
        if missing:
            raise ValueError(f"split names users without history: {sorted(missing)[:5]}")
        if self.queries_per_user < 1:
            raise ValueError("queries_per_user must be at least 1")

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def users(self) -> tuple[str, ...]:
        return self.dev_users + self.test_users

    def users_of(self, split: Split) -> tuple[str, ...]:
        """The users of ``split`` (``"dev"`` or ``"test"``), in their recorded order."""
        if split == "dev":
            return self.dev_users
        if split == "test":
            return self.test_users
        raise ValueError(f"split must be 'dev' or 'test', got {split!r}")

    def profile(self, user_id: str) -> tuple[Interaction, ...]:
        """The user's history without the held-out queries."""
        history = self.histories[user_id]
        return history[: max(len(history) - self.queries_per_user, 0)]

    def examples(self, split: Split = "test", num_users: int | None = None) -> list[TaskExample]:
        """The held-out queries of the first ``num_users`` users of ``split`` (all if ``None``).

        Users with no interaction left for the profile are skipped, since there is nothing to
        personalize from.
        """
        users = self.users_of(split)
        if num_users is not None:
            users = users[:num_users]
        examples: list[TaskExample] = []
        for user_id in users:
            history = self.histories[user_id]
            if len(history) <= self.queries_per_user:
                logger.warning("user %r has %d interactions; needs more than %d", user_id, len(history),
                               self.queries_per_user)
                continue
            profile = self.profile(user_id)
            for query in history[len(profile):]:
                examples.append(
                    TaskExample(
                        user_id=user_id,
                        query=query.query,
                        gold=query.response,
                        profile=profile,
                        spec=self.spec,
                        metadata=dict(query.metadata),
                        timestamp=query.timestamp,
                        example_id=query.interaction_id,
                    )
                )
        return examples

    def profile_pool(self) -> list[Interaction]:
        """Every user's profile (dev and test), never a held-out query: what baselines may fit on."""
        return [interaction for user_id in self.users for interaction in self.profile(user_id)]


def data_dir() -> Path:
    """The folder holding the committed samples: the package ``personaagent.data`` (``data/``)."""
    return Path(str(resources.files("personaagent.data")))


def load_task(name: str, *, queries_per_user: int = 3, data_root: Path | None = None) -> Task:
    """Load a committed sample task.

    Args:
        name: ``"news"`` or ``"ratings"``.
        queries_per_user: How many of each user's latest interactions are queries.
        data_root: Folder with ``<name>/task.json`` and ``<name>/interactions.jsonl``; defaults to
            :func:`data_dir`.

    Raises:
        UnknownTask: ``name`` is not a task.
        InvalidRecord: The sample files are missing or malformed.
    """
    if name not in TASK_NAMES:
        raise UnknownTask(f"no task named {name!r}; valid tasks: {', '.join(TASK_NAMES)}")
    folder = (data_root or data_dir()) / name
    try:
        meta = json.loads((folder / "task.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidRecord(f"{folder / 'task.json'}: cannot read task description: {exc}") from None
    interactions = _read_samples(folder / "interactions.jsonl")
    try:
        spec = TaskSpec(
            name=meta["name"],
            kind=meta["kind"],
            labels=tuple(meta.get("labels", ())),
            rating_range=tuple(meta["rating_range"]) if meta.get("rating_range") else None,
            description=meta.get("description", ""),
        )
        return Task(
            spec=spec,
            histories=group_by_user(interactions),
            dev_users=tuple(meta["dev_users"]),
            test_users=tuple(meta["test_users"]),
            queries_per_user=queries_per_user,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRecord(f"{folder / 'task.json'}: {exc}") from None


def load_examples(
    name: str, split: Split = "test", *, num_users: int | None = None, queries_per_user: int = 3
) -> list[TaskExample]:
    """Shortcut for ``load_task(name, queries_per_user=...).examples(split, num_users)``."""
    return load_task(name, queries_per_user=queries_per_user).examples(split, num_users)


def _read_samples(path: Path) -> list[Interaction]:
    # The samples are personaagent's own files, so any bad line is an error, not a skip.
    interactions = []
    try:
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if line.strip():
                    interactions.append(Interaction.model_validate_json(line))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRecord(f"{path}: {unreadable_reason(exc)}") from None
    except ValidationError as exc:
        raise InvalidRecord(f"{path}: line {line_number}: {unreadable_reason(exc)}") from None
    return interactions


def group_by_user(interactions: Iterable[Interaction]) -> dict[str, tuple[Interaction, ...]]:
    """Each user's interactions, oldest first, with exact duplicates dropped.

    The sort is stable, so interactions with equal (or missing) timestamps keep their input order.
    """
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    seen: set[str] = set()
    for interaction in interactions:
        key = interaction.interaction_id
        if key in seen:
            continue
        seen.add(key)
        by_user[interaction.user_id].append(interaction)
    return {
        user: tuple(sorted(items, key=lambda i: i.timestamp or EARLIEST))
        for user, items in by_user.items()
    }
