"""Checks on LM-generated text before it becomes durable state (a profile or a persona).

A tiny or confused model can answer with its prompt's scaffolding (``[[ ## field ## ]]``), a
JSON object, an unfilled template placeholder (``{profile}``), or a loop that repeats one phrase
until the token cap, instead of prose. Such text must never be saved as what we know about a user.
"""

from __future__ import annotations

import re
from collections import Counter

__all__ = ["scaffolding_problem", "repetition_problem", "generated_text_problem"]

#: A phrase of this many words may recur at most MAX_PHRASE_REPEATS times in real prose.
PHRASE_WORDS = 4
MAX_PHRASE_REPEATS = 3

_SCAFFOLDING = re.compile(
    r"\[\[ ## \w+ ## \]\]"  # DSPy's field markers
    r"|^\s*[{\[]"  # a JSON object or list instead of prose
    r"|\{\w+\}"  # an unfilled template placeholder such as {profile}
    r"|your (input|output) fields",  # the adapter's own instructions
    re.IGNORECASE,
)


def scaffolding_problem(text: str) -> str | None:
    """Why ``text`` is prompt scaffolding rather than prose, or None if it reads as prose."""
    if _SCAFFOLDING.search(text):
        return "contains prompt scaffolding, JSON or a template placeholder, not prose"
    return None


def repetition_problem(text: str) -> str | None:
    """Why ``text`` is a degenerate loop, or None.

    Seen with SmolLM2-135M: a persona edit that repeated "You can't have that." thirty times.
    Counting repeated 4-word phrases catches such loops without flagging normal prose.
    """
    words = re.findall(r"\w+", text.lower())
    phrases = Counter(tuple(words[i : i + PHRASE_WORDS]) for i in range(len(words) - PHRASE_WORDS + 1))
    if phrases:
        phrase, count = phrases.most_common(1)[0]
        if count > MAX_PHRASE_REPEATS:
            return f"repeats {' '.join(phrase)!r} {count} times"
    return None


def generated_text_problem(text: str) -> str | None:
    """The first reason ``text`` must not be saved as a profile or persona, or None."""
    return scaffolding_problem(text) or repetition_problem(text)
