"""Checks on LM-generated text before it becomes durable state (a profile or a persona).

A tiny or confused model can answer with its prompt's scaffolding (``[[ ## field ## ]]``), a
JSON object, or an unfilled template placeholder (``{profile}``) instead of prose. Such text
must never be saved as what we know about a user.
"""

from __future__ import annotations

import re

__all__ = ["scaffolding_problem"]

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
