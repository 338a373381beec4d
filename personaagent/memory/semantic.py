"""Semantic memory: an LLM summary (profile) of a user's history, persisted and refreshed.

The profile seeds the user's first persona. It is rebuilt only when enough new interactions
arrived since the last summary, because each refresh is an LM call over the whole history.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import dspy
from pydantic import ValidationError

from personaagent._files import user_dirname, write_atomic
from personaagent.errors import EmptyHistory, PersonaAgentError
from personaagent.guards import generated_text_problem
from personaagent.quoting import interaction_line
from personaagent.records import Memory, Profile, validate_user_id
from personaagent.signatures import SummarizeProfile

__all__ = ["SemanticMemory", "format_history"]

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


class SemanticMemory(dspy.Module):
    """Per-user profiles: summarized by the LM, stored as JSON in ``folder``.

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
        try:
            return Profile.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError) as exc:
            raise PersonaAgentError(f"profile file {path} is unreadable: {exc}") from None

    def needs_refresh(self, user_id: str, num_interactions: int) -> bool:
        profile = self.get(user_id)
        return profile is None or num_interactions - profile.num_interactions >= self.refresh_every

    def forward(self, user_id: str, memories: Sequence[Memory], *, force: bool = False) -> Profile:
        """Return the user's profile, summarizing ``memories`` first if it is missing or stale.

        Only evidence of the user is summarized (``Interaction.is_evidence``): notes the agent
        saved are left out. A summary that is scaffolding or too short is not saved; the returned
        profile then has empty text (the persona seeds without it) and the next call summarizes
        again.

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
        history = format_history(memories, max_chars=self.max_history_chars)
        summary = self.summarize(history=history).profile.strip()
        problem = generated_text_problem(summary) or (None if len(summary) >= MIN_PROFILE_CHARS else "too short")
        if problem is not None:
            # Not saved: the next call tries again instead of keeping a garbage profile.
            logger.warning("user %r: profile summary rejected (%s): %r", user_id, problem, summary[:80])
            return Profile(user_id=user_id, text="", num_interactions=len(memories))
        profile = Profile(user_id=user_id, text=summary, num_interactions=len(memories))
        write_atomic(self._path(user_id), profile)
        logger.info("user %r: profile rebuilt from %d interactions", user_id, len(memories))
        return profile
