"""Episodic memory: each user's past interactions, retrieved by similarity to a new query.

An interaction is embedded by its query text alone. Retrieval asks "when did this user face a
similar request?", which is a match of a new query against past queries; mixing the response
in (often just a label such as "[3]" or a rating) would pull vectors toward the answer and
away from the question being matched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from personaagent import telemetry
from personaagent.errors import InvalidRecord, UnknownUser
from personaagent.memory.store import EPISODIC, SUPERSEDED_FIELD, Hit, MemoryStore, StoredItem
from personaagent.records import EARLIEST, Interaction, Memory, describe_validation_error, utc_now, validate_user_id
from personaagent.runtime.embedder import Embedder

__all__ = ["AddReport", "EpisodicMemory", "UserMemory"]

logger = logging.getLogger(__name__)

_MEMORY_FIELDS = ("memory_id", "stored_at", SUPERSEDED_FIELD)


@dataclass(frozen=True)
class AddReport:
    """What an ``add`` did: items newly stored, and items already present (skipped)."""

    added: int
    duplicates: int


def _chronological(memory: Memory) -> tuple[bool, datetime, datetime, str]:
    # Undated interactions come first (treated as oldest); ties fall back to storage order.
    timestamp = memory.interaction.timestamp
    # Both times are aware: the records' validators read naive ones as UTC (records.as_aware).
    return (timestamp is not None, timestamp or EARLIEST, memory.stored_at, memory.memory_id)


class EpisodicMemory:
    """A user's interactions in the ``"episodic"`` namespace of a memory store.

    Args:
        store: The memory store. Its embedder name and size must match ``embedder``.
        embedder: Embeds interaction queries and search queries.
    """

    def __init__(self, store: MemoryStore, embedder: Embedder) -> None:
        store.require_embedder(embedder.name, embedder.dim)
        self.store = store
        self.embedder = embedder

    @staticmethod
    def _payload(memory: Memory) -> dict[str, Any]:
        payload = memory.interaction.model_dump(mode="json")
        payload.update(memory.model_dump(mode="json", include=set(_MEMORY_FIELDS)))
        return payload

    @staticmethod
    def _memory(hit: Hit) -> Memory:
        payload = hit.payload
        interaction = Interaction.model_validate({k: payload[k] for k in Interaction.model_fields if k in payload})
        return Memory(
            interaction=interaction,
            memory_id=payload.get("memory_id", hit.id),
            stored_at=payload["stored_at"],
            superseded_by=payload.get(SUPERSEDED_FIELD),
            score=hit.score,
        )

    def add(self, interactions: Iterable[Interaction]) -> AddReport:
        """Store interactions, skipping any already stored (an interaction's id is its content hash).

        Re-adding a stored interaction leaves it untouched, so a superseded one stays superseded.

        Returns:
            How many were added and how many were duplicates (within the input or of stored ones).
        """
        interactions = list(interactions)
        users = {interaction.user_id for interaction in interactions}
        only_user = next(iter(users)) if len(users) == 1 else None
        with telemetry.span("personaagent.memory.add", user_id=only_user, attributes={"personaagent.users": len(users)}) as span:
            report = self._add(interactions)
            span.set_attributes({"personaagent.added": report.added, "personaagent.duplicates": report.duplicates})
        return report

    def _add(self, interactions: Iterable[Interaction]) -> AddReport:
        by_user: dict[str, dict[str, Interaction]] = {}
        total = 0
        for interaction in interactions:
            total += 1
            by_user.setdefault(interaction.user_id, {}).setdefault(interaction.interaction_id, interaction)
        added = 0
        for user_id, fresh in by_user.items():
            for hit in self.store.get(EPISODIC, user_id, list(fresh)):
                fresh.pop(hit.id, None)
            if not fresh:
                continue
            now = utc_now()
            memories = [Memory(interaction=i, memory_id=mid, stored_at=now) for mid, i in fresh.items()]
            vectors = self.embedder.embed_batch([m.interaction.query for m in memories])
            self.store.upsert(
                EPISODIC,
                user_id,
                [StoredItem(id=m.memory_id, vector=v, payload=self._payload(m)) for m, v in zip(memories, vectors)],
            )
            added += len(memories)
        logger.debug("stored %d interactions for %d users (%d duplicates)", added, len(by_user), total - added)
        return AddReport(added=added, duplicates=total - added)

    def search(
        self,
        user_id: str,
        query: str,
        k: int = 5,
        *,
        before: datetime | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[Memory]:
        """The ``k`` current (not superseded) memories of this user most similar to ``query``.

        Args:
            before: only memories dated earlier than this (a naive time is UTC), or undated ones,
                are searched: the cut is part of the store query, so up to ``k`` come back however
                many newer memories resemble the query. Defaults to None (no cut).
            exclude_ids: memory ids never returned (also part of the query). Defaults to none.

        Returns:
            Memories with ``score`` set, best first; empty for an unknown user.
        """
        # Checked here, not only in the store, so a bad id is an InvalidRecord like everywhere else.
        validate_user_id(user_id)
        with telemetry.span("personaagent.memory.search", user_id=user_id, kind="RETRIEVER", attributes={"personaagent.k": k}) as span:
            hits = self.store.search(
                EPISODIC,
                user_id,
                self.embedder.embed(query),
                k,
                before=before,
                exclude_ids=exclude_ids,
            )
            span.set_attribute("personaagent.hits", len(hits))
        return [self._memory(hit) for hit in hits]

    def get(self, user_id: str, memory_id: str) -> Memory:
        """One memory of this user by id.

        Raises:
            UnknownUser: The user has no memory with this id.
        """
        validate_user_id(user_id)
        hits = self.store.get(EPISODIC, user_id, [memory_id])
        if not hits:
            raise UnknownUser(f"user {user_id!r} has no memory {memory_id!r}")
        return self._memory(hits[0])

    def supersede(self, user_id: str, old_memory_id: str, new: Interaction) -> Memory:
        """Replace a memory with a newer interaction, keeping the old one as history.

        The new interaction is stored (if it is not already) and the old memory is marked
        ``superseded_by`` the new one's id, so ``search`` and ``latest`` skip it while
        ``history`` still shows it.

        Returns:
            The new memory.

        Raises:
            UnknownUser: The user has no memory ``old_memory_id``.
            ValueError: ``new`` belongs to another user, or is the old interaction itself.
        """
        if new.user_id != user_id:
            raise ValueError(f"the new interaction belongs to {new.user_id!r}, not {user_id!r}")
        if new.interaction_id == old_memory_id:
            raise ValueError("an interaction cannot supersede itself")
        self.get(user_id, old_memory_id)
        self.add([new])
        self.store.set_payload(EPISODIC, user_id, old_memory_id, {SUPERSEDED_FIELD: new.interaction_id})
        return self.get(user_id, new.interaction_id)

    def history(self, user_id: str, *, include_superseded: bool = True) -> list[Memory]:
        """All of a user's memories, oldest first; undated interactions come before dated ones.

        Args:
            include_superseded: Also return superseded memories. Defaults to True.
        """
        validate_user_id(user_id)
        hits = self.store.scroll(EPISODIC, user_id, include_superseded=include_superseded)
        return sorted((self._memory(hit) for hit in hits), key=_chronological)

    def latest(self, user_id: str, n: int) -> list[Memory]:
        """The ``n`` most recent current memories, in the same oldest-first order as ``history``."""
        if n < 1:
            return []
        return self.history(user_id, include_superseded=False)[-n:]

    def count(self, user_id: str) -> int:
        """How many memories the user has, superseded ones included."""
        validate_user_id(user_id)
        return self.store.count(EPISODIC, user_id)

    def user_ids(self) -> list[str]:
        """Every user with at least one memory, sorted."""
        return self.store.user_ids(EPISODIC)

    def require_user(self, user_id: str) -> None:
        """Raise if the user has no memories.

        Raises:
            UnknownUser: No memories are stored for ``user_id``.
        """
        if self.count(user_id) == 0:
            raise UnknownUser(f"no memories for user {user_id!r}; ingest some with `personaagent ingest`")


class UserMemory:
    """One user's episodic memory with the user bound, as mem0 binds ``user_id``: ``agent.memory``.

    ``search`` and ``history`` agree by default: both leave out superseded (corrected) memories.

    Args:
        episodic: the workspace's episodic memory.
        user_id: whose memories these are.

    Examples:
        >>> agent.memory.add("Rate: Heat (1995)", "4.5")  # doctest: +SKIP
        >>> agent.memory.search("a heist movie", k=3)  # doctest: +SKIP
    """

    def __init__(self, episodic: EpisodicMemory, user_id: str) -> None:
        self.episodic = episodic
        self.user_id = validate_user_id(user_id)

    def add(
        self,
        query: str,
        response: str,
        *,
        timestamp: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> AddReport:
        """Remember what the user asked and the response that was right for them.

        Raises:
            InvalidRecord: the query is blank, or a field has the wrong type.
        """
        return self.episodic.add([self._interaction(query, response, timestamp=timestamp, metadata=metadata)])

    def search(self, query: str, k: int = 5, *, before: datetime | None = None) -> list[Memory]:
        """The ``k`` current memories most similar to ``query``, best first (``score`` set);
        with ``before``, only memories older than that time."""
        return self.episodic.search(self.user_id, query, k, before=before)

    def history(self, *, include_superseded: bool = False) -> list[Memory]:
        """Every memory, oldest first. Superseded ones are left out unless ``include_superseded``."""
        return self.episodic.history(self.user_id, include_superseded=include_superseded)

    def supersede(
        self,
        old_memory_id: str,
        query: str,
        response: str,
        *,
        timestamp: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Memory:
        """Correct a memory: store the new interaction and mark the old one superseded by it.

        Raises:
            UnknownUser: the user has no memory ``old_memory_id``.
        """
        new = self._interaction(query, response, timestamp=timestamp, metadata=metadata)
        return self.episodic.supersede(self.user_id, old_memory_id, new)

    def count(self) -> int:
        """How many memories the user has, superseded ones included."""
        return self.episodic.count(self.user_id)

    def _interaction(
        self, query: str, response: str, *, timestamp: datetime | None, metadata: dict[str, Any] | None
    ) -> Interaction:
        try:
            return Interaction(
                user_id=self.user_id, query=query, response=response, timestamp=timestamp, metadata=metadata or {}
            )
        except ValidationError as exc:
            raise InvalidRecord(f"invalid interaction: {describe_validation_error(exc)}") from None
