"""The memory store's facade: ``open_store`` picks a backend once, from the location.

The interface and the records are in ``base.py``; the backends in ``edge.py`` (embedded Qdrant
Edge, the default) and ``server.py`` (a Qdrant server through qdrant-client). Every name is
re-exported here, so ``personaagent.memory.store`` stays the one import path.
"""

from __future__ import annotations

from personaagent.config import MEMORY
from personaagent.errors import StoreError
from personaagent.memory.base import EPISODIC, KNOWLEDGE, NAMESPACES, SUPERSEDED_FIELD, Hit, MemoryStore, StoredItem
from personaagent.memory.edge import EdgeStore
from personaagent.memory.server import QdrantServerStore

__all__ = [
    "EPISODIC",
    "KNOWLEDGE",
    "NAMESPACES",
    "SUPERSEDED_FIELD",
    "StoredItem",
    "Hit",
    "MemoryStore",
    "EdgeStore",
    "QdrantServerStore",
    "open_store",
]


def open_store(location: str, *, embedder_name: str, dim: int, api_key: str | None = None) -> MemoryStore:
    """Open the store a location names.

    Args:
        location: ``":memory:"`` for a temporary embedded store (an EdgeStore in a temporary
            folder, deleted on close: the same engine as the default, so tests see real
            behaviour); an ``http://`` or ``https://`` URL for a Qdrant server; otherwise a
            folder for a persistent EdgeStore.
        embedder_name: Name of the embedder whose vectors are stored.
        dim: Vector size.
        api_key: API key for a Qdrant server. Defaults to None.

    Raises:
        StoreError: The location is empty or looks like a URL of another scheme.
    """
    location = location.strip()
    if not location:
        raise StoreError("the store location is empty; give a folder, ':memory:' or a Qdrant URL (http://...)")
    if location == MEMORY:
        return EdgeStore(MEMORY, embedder_name=embedder_name, dim=dim)
    if location.startswith(("http://", "https://")):
        return QdrantServerStore(location, embedder_name=embedder_name, dim=dim, api_key=api_key)
    if "://" in location:
        raise StoreError(
            f"unsupported store location {location!r}; give a folder, ':memory:' or a Qdrant URL "
            "starting with http:// or https://"
        )
    return EdgeStore(location, embedder_name=embedder_name, dim=dim)
