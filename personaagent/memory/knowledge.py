"""The knowledge base: documents a user provides, retrieved by similarity to a query.

Documents are stored whole, one vector each. The local embedder reads only a document's first
256 tokens or so, so split long documents into passages before adding them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from personaagent.memory.episodic import AddReport
from personaagent.memory.store import KNOWLEDGE, MemoryStore, StoredItem
from personaagent.errors import InvalidRecord
from personaagent.records import validate_user_id
from personaagent.runtime.embedder import Embedder

__all__ = ["KnowledgeHit", "KnowledgeBase", "document_id"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnowledgeHit:
    """A document found by a search, with its similarity to the query."""

    doc_id: str
    text: str
    score: float


def document_id(text: str) -> str:
    """The id given to a document added without one: a hash of its text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class KnowledgeBase:
    """Per-user documents in the ``"knowledge"`` namespace of a memory store.

    Args:
        store: The memory store. Its embedder name and size must match ``embedder``.
        embedder: Embeds documents and queries.
    """

    def __init__(self, store: MemoryStore, embedder: Embedder) -> None:
        store.require_embedder(embedder.name, embedder.dim)
        self.store = store
        self.embedder = embedder

    def add_documents(self, user_id: str, docs: Iterable[str | tuple[str, str]]) -> AddReport:
        """Add documents for one user; a document whose id is already stored replaces it.

        Args:
            user_id: Whose documents these are.
            docs: Texts (their id is a hash of the text, so adding one twice stores it once)
                or ``(doc_id, text)`` pairs.

        Returns:
            How many documents were new, and how many ids were already present (replaced, or
            repeated within ``docs``; the last text for a repeated id wins).

        Raises:
            ValueError: The user id is invalid.
            InvalidRecord: A document is empty (a ValueError too).
        """
        validate_user_id(user_id)
        batch: dict[str, str] = {}
        total = 0
        for doc in docs:
            doc_id, text = (document_id(doc), doc) if isinstance(doc, str) else doc
            if not text.strip():
                raise InvalidRecord(f"document {doc_id!r} is empty; give each document some text")
            batch[doc_id] = text
            total += 1
        if not batch:
            return AddReport(added=0, duplicates=0)
        existing = {hit.id for hit in self.store.get(KNOWLEDGE, user_id, list(batch))}
        vectors = self.embedder.embed_batch(list(batch.values()))
        self.store.upsert(
            KNOWLEDGE,
            user_id,
            [StoredItem(id=i, vector=v, payload={"doc_id": i, "text": t}) for (i, t), v in zip(batch.items(), vectors)],
        )
        added = len(batch) - len(existing)
        logger.debug("stored %d documents for %r", len(batch), user_id)
        return AddReport(added=added, duplicates=total - added)

    def search(self, user_id: str, query: str, k: int = 5) -> list[KnowledgeHit]:
        """The ``k`` documents of this user most similar to ``query``, best first (empty if none)."""
        validate_user_id(user_id)
        hits = self.store.search(KNOWLEDGE, user_id, self.embedder.embed(query), k)
        return [
            KnowledgeHit(doc_id=h.id, text=str(h.payload.get("text", "")), score=float(h.score or 0.0)) for h in hits
        ]

    def count(self, user_id: str) -> int:
        """How many documents the user has."""
        return self.store.count(KNOWLEDGE, user_id)
