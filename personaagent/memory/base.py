"""The memory store's interface, shared by its two backends (``edge.py``, ``server.py``).

Points live in namespaces (``"episodic"``: a user's interactions, ``"knowledge"``: documents a
user provided). Every read and write names one user and filters on that user's id exactly, so
one user's memories can never surface in another user's results; there is no all-users search.

Each point's id is a UUID5 of ``(namespace, user_id, item_id)``: the same item id for two users
never collides, and upserting an item again replaces it instead of duplicating it. The store
keeps two reserved payload fields: ``user_id`` (the tenant key, keyword-indexed) and
``item_id`` (the caller's id, returned as ``Hit.id``).
"""

from __future__ import annotations

import abc
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from personaagent.errors import EmbeddingMismatch, StoreError
from personaagent.records import as_aware, validate_user_id

__all__ = [
    "EPISODIC",
    "KNOWLEDGE",
    "NAMESPACES",
    "SUPERSEDED_FIELD",
    "StoredItem",
    "Hit",
    "MemoryStore",
    "point_id",
    "STORE_SCHEMA_VERSION",
    "USER_FIELD",
    "ITEM_FIELD",
    "RESERVED_FIELDS",
    "SCROLL_PAGE",
]

logger = logging.getLogger(__name__)

EPISODIC = "episodic"
KNOWLEDGE = "knowledge"
NAMESPACES = (EPISODIC, KNOWLEDGE)

#: Version of the on-disk layout (meta file, folders, reserved payload fields).
STORE_SCHEMA_VERSION = 1
USER_FIELD = "user_id"
ITEM_FIELD = "item_id"
#: Items whose payload has a non-empty value here are hidden from ``search`` by default.
SUPERSEDED_FIELD = "superseded_by"
#: The payload field a search's ``before`` cut compares (RFC 3339 text); items without one are
#: never cut (an undated item counts as oldest).
TIME_FIELD = "timestamp"
RESERVED_FIELDS = (USER_FIELD, ITEM_FIELD)
_POINT_NAMESPACE = uuid.UUID("8f0e3c1a-6b1d-4c4e-9a57-3f2f1d0b7e21")
SCROLL_PAGE = 1000


@dataclass(frozen=True)
class StoredItem:
    """A point to write: the caller's id, its vector, and a JSON-compatible payload.

    The payload must not carry ``item_id``; ``user_id`` may be present only if it equals the
    user the item is written for.
    """

    id: str
    vector: np.ndarray | Sequence[float]
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A point read back: the caller's id, its payload, and its similarity for searches."""

    id: str
    payload: dict[str, Any]
    score: float | None = None


def point_id(namespace: str, user_id: str, item_id: str) -> str:
    """The Qdrant point id of one user's item: deterministic, and unique per user and namespace."""
    return str(uuid.uuid5(_POINT_NAMESPACE, json.dumps([namespace, user_id, item_id], ensure_ascii=False)))


class MemoryStore(abc.ABC):
    """Per-user vector storage, partitioned into namespaces.

    Args:
        embedder_name: Name of the embedder that makes every vector in this store.
        dim: Vector size.
    """

    def __init__(self, embedder_name: str, dim: int) -> None:
        if dim < 1:
            raise StoreError(f"vector size must be positive, got {dim}")
        self.embedder_name = embedder_name
        self.dim = dim

    # --- the interface ---------------------------------------------------------------------

    # Every user-scoped call is checked here once, then forwarded to the backend's _method.

    def upsert(self, namespace: str, user_id: str, items: Sequence[StoredItem]) -> None:
        """Write items for one user, replacing any with the same id."""
        self._check_scope(namespace, user_id)
        self._upsert(namespace, user_id, items)

    def search(
        self,
        namespace: str,
        user_id: str,
        vector: np.ndarray | Sequence[float],
        k: int,
        *,
        include_superseded: bool = False,
        before: datetime | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[Hit]:
        """The ``k`` items of this user most similar to ``vector``, best first (none for ``k < 1``).

        The time cut and the hidden ids are part of the query, not applied to its top ``k``: the
        result has ``min(k, visible items)`` hits however many hidden ones are more similar.

        Args:
            include_superseded: Also return items whose ``superseded_by`` is set. Defaults to False.
            before: Only items whose ``TIME_FIELD`` is earlier than this instant (a naive time is
                UTC), or that have none. Defaults to None (no cut).
            exclude_ids: Item ids never returned. Defaults to none.
        """
        self._check_scope(namespace, user_id)
        if k < 1:
            return []
        return self._search(
            namespace,
            user_id,
            vector,
            k,
            include_superseded=include_superseded,
            before=as_aware(before),
            hidden=[point_id(namespace, user_id, item_id) for item_id in exclude_ids],
        )

    def get(self, namespace: str, user_id: str, item_ids: Sequence[str]) -> list[Hit]:
        """The items of this user with these ids, in the given order; missing ids are skipped."""
        self._check_scope(namespace, user_id)
        return self._get(namespace, user_id, item_ids) if item_ids else []

    def scroll(self, namespace: str, user_id: str, *, include_superseded: bool = True) -> list[Hit]:
        """All items of one user, in no particular order.

        Args:
            include_superseded: Also return superseded items. Defaults to True.
        """
        self._check_scope(namespace, user_id)
        return self._scroll(namespace, user_id, include_superseded=include_superseded)

    def set_payload(self, namespace: str, user_id: str, item_id: str, fields: Mapping[str, Any]) -> None:
        """Set payload fields on one item of this user.

        Raises:
            StoreError: The user has no such item, or a field is reserved.
        """
        self._check_scope(namespace, user_id)
        if any(key in RESERVED_FIELDS for key in fields):
            raise StoreError(f"payload fields {', '.join(RESERVED_FIELDS)} are reserved for the store")
        self._set_payload(namespace, user_id, item_id, fields)

    def count(self, namespace: str, user_id: str) -> int:
        """How many items this user has in the namespace, superseded ones included."""
        self._check_scope(namespace, user_id)
        return self._count(namespace, user_id)

    # --- what a backend implements (arguments already checked) -------------------------------

    @abc.abstractmethod
    def _upsert(self, namespace: str, user_id: str, items: Sequence[StoredItem]) -> None: ...

    @abc.abstractmethod
    def _search(
        self,
        namespace: str,
        user_id: str,
        vector: np.ndarray | Sequence[float],
        k: int,
        *,
        include_superseded: bool,
        before: datetime | None,
        hidden: Sequence[str],
    ) -> list[Hit]:
        """``search`` with an aware ``before`` and the hidden items' point ids."""

    @abc.abstractmethod
    def _get(self, namespace: str, user_id: str, item_ids: Sequence[str]) -> list[Hit]: ...

    @abc.abstractmethod
    def _scroll(self, namespace: str, user_id: str, *, include_superseded: bool) -> list[Hit]: ...

    @abc.abstractmethod
    def _set_payload(self, namespace: str, user_id: str, item_id: str, fields: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def _count(self, namespace: str, user_id: str) -> int: ...

    @abc.abstractmethod
    def user_ids(self, namespace: str) -> list[str]:
        """Every user with at least one item in the namespace, sorted (for batch jobs, not search)."""

    @abc.abstractmethod
    def delete_user(self, user_id: str) -> None:
        """Remove all of one user's items from every namespace."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release the store; it cannot be used afterwards. Safe to call twice."""

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def require_embedder(self, name: str, dim: int) -> None:
        """Check that vectors from the embedder ``name`` (of size ``dim``) belong in this store.

        Raises:
            EmbeddingMismatch: The store was opened for another embedder or size.
        """
        if name != self.embedder_name or dim != self.dim:
            raise EmbeddingMismatch(
                f"the store holds vectors from {self.embedder_name!r} ({self.dim} dimensions) but the "
                f"embedder is {name!r} ({dim}); open the store with the same embedder"
            )

    # --- shared checks -----------------------------------------------------------------------

    @staticmethod
    def _check_namespace(namespace: str) -> None:
        if namespace not in NAMESPACES:
            raise StoreError(f"unknown namespace {namespace!r}; use one of {', '.join(NAMESPACES)}")

    def _check_scope(self, namespace: str, user_id: str) -> None:
        self._check_namespace(namespace)
        self._check_user(user_id)

    @staticmethod
    def _check_user(user_id: str) -> None:
        try:
            validate_user_id(user_id)
        except ValueError as exc:
            raise StoreError(f"invalid user id {user_id!r}: {exc}") from None

    def _vector(self, vector: np.ndarray | Sequence[float]) -> list[float]:
        array = np.asarray(vector, dtype=np.float32).reshape(-1)
        if array.shape[0] != self.dim:
            raise EmbeddingMismatch(
                f"vector has {array.shape[0]} dimensions but this store holds {self.dim}-dimensional "
                f"vectors from {self.embedder_name!r}"
            )
        return array.tolist()

    def _payload(self, user_id: str, item: StoredItem) -> dict[str, Any]:
        if not isinstance(item.id, str) or not item.id:
            raise StoreError(f"item ids must be non-empty strings, got {item.id!r}")
        payload = dict(item.payload)
        if ITEM_FIELD in payload:
            raise StoreError(f"payload field {ITEM_FIELD!r} is reserved for the store")
        if payload.setdefault(USER_FIELD, user_id) != user_id:
            raise StoreError(f"item {item.id!r} has user_id {payload[USER_FIELD]!r} but is written for {user_id!r}")
        payload[ITEM_FIELD] = item.id
        return payload

    @staticmethod
    def _hit(payload: Mapping[str, Any] | None, score: float | None = None) -> Hit:
        data = dict(payload or {})
        item_id = data.pop(ITEM_FIELD)
        return Hit(id=item_id, payload=data, score=score)

    @staticmethod
    def _owned(payload: Mapping[str, Any] | None, user_id: str) -> bool:
        # Belt and braces behind the filter / UUID5 ids: never hand out another user's point.
        return payload is not None and payload.get(USER_FIELD) == user_id


