"""Semantic memory: a profile of each user, persisted and refreshed.

A profile has two parts: facts computed from the whole history with no LM (label shares, rating
mean and spread, tendencies per genre or topic; :func:`history_facts`), and an LM summary written
from those facts and the latest interactions. The profile seeds the user's first persona, so a
seed persona always says something true about the user even when the summary is rejected. It is
rebuilt only when enough new interactions arrived since the last summary, because each refresh is
an LM call.
"""

from __future__ import annotations

import logging
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dspy

from personaagent._files import read_model, user_dirname, write_atomic
from personaagent.actions import as_ratings
from personaagent.errors import EmptyHistory
from personaagent.guards import generated_text_problem
from personaagent.quoting import interaction_line
from personaagent.records import Memory, Profile, validate_user_id
from personaagent.signatures import SummarizeProfile

__all__ = ["SemanticMemory", "drop_statistics", "format_history", "history_facts", "metadata_topics", "split_fact_lines"]

logger = logging.getLogger(__name__)

#: A shorter summary says nothing about the user (tiny models sometimes answer "User.").
MIN_PROFILE_CHARS = 15


def format_history(memories: Sequence[Memory], *, max_chars: int = 3000, max_item_chars: int = 200) -> str:
    """The newest interactions as ``"query" => "response"`` lines (quoted data), newest kept
    when over ``max_chars``.

    Bounded so the summary prompt fits a small model's context whatever the history length.
    """
    lines: list[str] = []
    used = 0
    for memory in reversed(memories):  # newest first, so the cut drops the oldest
        line = interaction_line(memory.interaction, max_item_chars=max_item_chars)
        if used + len(line) + 1 > max_chars:
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(reversed(lines))


#: Metadata keys whose values name an item's topics ("Comedy|Drama"), for per-topic tendencies.
_TOPIC_KEYS = ("genres", "genre", "topics", "topic", "category", "tags")
#: Topics with fewer items than this say nothing reliable about a tendency.
_MIN_TOPIC_ITEMS = 3


#: Longest topic taken from metadata; a longer one is a sentence, not a genre.
MAX_TOPIC_CHARS = 30


def metadata_topics(metadata: Mapping[str, Any]) -> list[str]:
    """The topics an item's metadata names (``genres: "Comedy|Drama"``), or ``[]``.

    Stored metadata is data that reaches prompts (the persona's facts, critiques): a topic is
    kept only if it is one printable line of at most ``MAX_TOPIC_CHARS`` characters.
    """
    for key in _TOPIC_KEYS:
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            topics = (topic.strip() for topic in value.split("|"))
            return [
                topic for topic in topics
                if topic and topic != "(no genres listed)" and topic.isprintable() and len(topic) <= MAX_TOPIC_CHARS
            ]
    return []


def _rating_facts(memories: Sequence[Memory], ratings: list[float], max_topics: int) -> str:
    mean = statistics.fmean(ratings)
    spread = statistics.pstdev(ratings)
    high = sum(r >= 4 for r in ratings) / len(ratings)
    low = sum(r <= 2 for r in ratings) / len(ratings)
    lines = [
        f"You rated {len(ratings)} items: {mean:.1f} on average (spread {spread:.1f}); "
        f"{high:.0%} of your ratings are 4 or more, {low:.0%} are 2 or less."
    ]
    by_topic: dict[str, list[float]] = defaultdict(list)
    for memory, rating in zip(memories, ratings):
        for topic in metadata_topics(memory.interaction.metadata):
            by_topic[topic].append(rating)
    means = sorted(
        ((statistics.fmean(values), topic, len(values)) for topic, values in by_topic.items() if len(values) >= _MIN_TOPIC_ITEMS),
        reverse=True,
    )
    if len(means) >= 2:
        half = max(1, min(max_topics, len(means) // 2))

        def describe(rows: list[tuple[float, str, int]]) -> str:
            return ", ".join(f"{topic} {value:.1f} ({count} items)" for value, topic, count in rows)

        lines.append(f"You rate highest: {describe(means[:half])}; lowest: {describe(means[::-1][:half])}.")
    return "\n".join(lines)


def _label_facts(memories: Sequence[Memory], responses: list[str], max_topics: int) -> str:
    counts = Counter(responses)
    shares = ", ".join(f"{label} {count / len(responses):.0%}" for label, count in counts.most_common(max_topics))
    rest = len(counts) - min(len(counts), max_topics)
    more = f", and {rest} other answer{'s' if rest != 1 else ''}" if rest > 0 else ""
    return f"Your answers to {len(responses)} past items: {shares}{more}."


def history_facts(memories: Sequence[Memory], *, max_topics: int = 6) -> str:
    """What a user's history says in numbers, in second person, with no LM call.

    * Numeric responses (ratings): count, mean, spread, shares of high and low ratings, and the
      topics (metadata ``genres``/``topic``/...) rated highest and lowest, each with at least
      3 items.
    * Responses that repeat (labels): the share of each of the ``max_topics`` most frequent.
    * Anything else (free text): how many interactions there are.

    Args:
        memories: the user's interactions (notes without a response are ignored).
        max_topics: most labels or topics listed. Defaults to 6.

    Returns:
        One to three lines, or ``""`` for an empty history.
    """
    answered = [m for m in memories if m.interaction.is_evidence]
    responses = [m.interaction.response.strip() for m in answered]
    if not responses:
        return ""
    ratings = as_ratings(responses)
    if ratings is not None:
        return _rating_facts(answered, ratings, max_topics)
    if len(set(responses)) < len(responses):
        return _label_facts(answered, responses, max_topics)
    return f"You have {len(responses)} past interactions."


#: The opening of every line ``history_facts`` writes (one alternative per line form above).
_FACT_LINE = re.compile(
    r"^(You rated \d+ items: |You rate highest: |Your answers to \d+ past items: |You have \d+ past interactions\.$)"
)


#: Markdown an LM puts before a line it restates: a list bullet (``-``, ``*``, ``+``, ``•``), a
#: number (``1.``, ``2)``) or a quote (``>``), each followed by a space; any number of them.
_LINE_MARKERS = re.compile(r"^(?:(?:[-*+•]|\d{1,3}[.)])\s+|>\s*)+")
#: Emphasis opened at the start of a line (``**``, ``__``, ``*``, ``_``), closed later on it.
_EMPHASIS = re.compile(r"^(\*\*|__|\*|_)(?=\S)")


def _unmarked(line: str) -> str:
    """``line`` stripped of leading markdown list/quote markers and of emphasis around its opening:
    ``- **Your answers to 60 past items:** POLITICS 90%.`` -> ``Your answers to 60 past items: POLITICS 90%.``
    """
    text = _LINE_MARKERS.sub("", line.strip())
    emphasis = _EMPHASIS.match(text)
    if emphasis is not None:
        mark = emphasis.group(1)
        body = text[len(mark):]
        close = body.find(mark)
        if close > 0:  # and its closing mark: "**Your answers to 60 past items:** POLITICS 90%."
            body = body[:close] + body[close + len(mark):]
        text = body
    return text.strip()


def split_fact_lines(text: str) -> tuple[tuple[str, ...], str]:
    """Split a persona into the lines ``history_facts`` computed and the rest.

    The computed facts are counted, not written by an LM, so whatever edits the rest of a
    persona (an alignment step) must pass them through unchanged: ``split_fact_lines`` finds
    them by the line forms ``history_facts`` writes, stale counts included, also when an LM
    restated one as markdown (``- **Your answers to 60 past items:** ...``, ``> You rated ...``).

    Returns:
        ``(fact_lines, rest)``: the fact lines in order, stripped of whitespace and markdown
        markers, and the other lines joined by newlines (both empty when there are none).
    """
    facts: list[str] = []
    rest: list[str] = []
    for line in text.splitlines():
        plain = _unmarked(line)
        if _FACT_LINE.match(plain):
            facts.append(plain)
        else:
            rest.append(line)
    return tuple(facts), "\n".join(rest).strip()


#: A number in prose that is not a year or a decade ("1995", "1990s"): an average, a share, a
#: count or a score, which the computed facts state exactly.
_STATISTIC = re.compile(r"(?<![\w.])(?!(?:1[89]|20)\d\d(?![\d.,]\d))\d+(?:[.,]\d+)?(?![\w.]*\w)|%")


def drop_statistics(summary: str) -> str:
    """``summary`` without its sentences that state numbers (years and decades do not count).

    The numbers of a profile are the computed facts; an LM summary that restates them gets them
    wrong (Qwen2.5-1.5B wrote "they rate movies on average 3.5 out of 5" for a user whose mean
    is 3.1, and then answered 3.5 to every rating query), so its numeric sentences are dropped
    rather than trusted.
    """
    sentences = re.split(r"(?<=[.!?])\s+", summary.strip())
    return " ".join(sentence for sentence in sentences if not _STATISTIC.search(sentence)).strip()


class SemanticMemory(dspy.Module):
    """Per-user profiles: computed facts plus an LM summary, stored as JSON in ``folder``.

    Args:
        folder: where profile files live.
        refresh_every: rebuild a profile once this many interactions were added since the last
            summary. Defaults to 20.
        max_history_chars: how much history the summary prompt may hold. Defaults to 3000.
    """

    def __init__(self, folder: Path, *, refresh_every: int = 20, max_history_chars: int = 3000) -> None:
        super().__init__()
        if refresh_every < 1:
            raise ValueError("refresh_every must be at least 1")
        self.folder = Path(folder)
        self.refresh_every = refresh_every
        self.max_history_chars = max_history_chars
        self.summarize = dspy.Predict(SummarizeProfile)

    def _path(self, user_id: str) -> Path:
        return self.folder / f"{user_dirname(validate_user_id(user_id))}.json"

    def get(self, user_id: str) -> Profile | None:
        """The stored profile of ``user_id``, or None."""
        path = self._path(user_id)
        if not path.is_file():
            return None
        return read_model(path, Profile, "profile")

    def needs_refresh(self, user_id: str, num_interactions: int) -> bool:
        profile = self.get(user_id)
        return profile is None or num_interactions - profile.num_interactions >= self.refresh_every

    def forward(self, user_id: str, memories: Sequence[Memory], *, force: bool = False) -> Profile:
        """Return the user's profile, summarizing ``memories`` first if it is missing or stale.

        Only evidence of the user is summarized (``Interaction.is_evidence``): notes the agent
        saved are left out. Sentences of the summary that state numbers are dropped
        (:func:`drop_statistics`). A summary that is scaffolding or too short is not saved; the returned
        profile then has the computed facts and empty text (the persona seeds from the facts
        alone) and the next call summarizes again.

        Raises:
            EmptyHistory: no memory is evidence of the user.
        """
        memories = [m for m in memories if m.interaction.is_evidence]
        if not memories:
            raise EmptyHistory(
                f"user {user_id!r} has no interactions to summarize; ingest some with `personaagent ingest`"
            )
        if not force and not self.needs_refresh(user_id, len(memories)):
            return self.get(user_id)  # type: ignore[return-value]
        facts = history_facts(memories)
        history = format_history(memories, max_chars=self.max_history_chars)
        written = self.summarize(facts=facts or "(none)", history=history).profile.strip()
        summary = drop_statistics(written)
        problem = generated_text_problem(summary) or (None if len(summary) >= MIN_PROFILE_CHARS else "too short")
        if summary != written:
            logger.info("user %r: dropped the summary's sentences that state numbers: %r", user_id, written[:200])
        if problem is not None:
            # Not saved: the next call tries again instead of keeping a garbage profile.
            logger.warning("user %r: profile summary rejected (%s): %r", user_id, problem, summary[:80])
            return Profile(user_id=user_id, text="", facts=facts, num_interactions=len(memories))
        profile = Profile(user_id=user_id, text=summary, facts=facts, num_interactions=len(memories))
        write_atomic(self._path(user_id), profile)
        logger.info("user %r: profile rebuilt from %d interactions", user_id, len(memories))
        return profile
