"""The memory store: one interface, an embedded Qdrant Edge backend and a Qdrant server backend.

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
import shutil
import tempfile
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import portalocker

from personaagent._files import write_bytes_atomic
from personaagent.config import MEMORY
from personaagent.errors import EmbeddingMismatch, StoreError, StoreLocked
from personaagent.records import validate_user_id

__all__ = [
    "EPISODIC",
    "KNOWLEDGE",
    "NAMESPACES",
    "StoredItem",
    "Hit",
    "MemoryStore",
    "EdgeStore",
    "QdrantServerStore",
    "open_store",
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
_RESERVED = (USER_FIELD, ITEM_FIELD)
_POINT_NAMESPACE = uuid.UUID("8f0e3c1a-6b1d-4c4e-9a57-3f2f1d0b7e21")
_SCROLL_PAGE = 1000


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

    @abc.abstractmethod
    def upsert(self, namespace: str, user_id: str, items: Sequence[StoredItem]) -> None:
        """Write items for one user, replacing any with the same id."""

    @abc.abstractmethod
    def search(
        self,
        namespace: str,
        user_id: str,
        vector: np.ndarray | Sequence[float],
        k: int,
        *,
        include_superseded: bool = False,
    ) -> list[Hit]:
        """The ``k`` items of this user most similar to ``vector``, best first.

        Args:
            include_superseded: Also return items whose ``superseded_by`` is set. Defaults to False.
        """

    @abc.abstractmethod
    def get(self, namespace: str, user_id: str, item_ids: Sequence[str]) -> list[Hit]:
        """The items of this user with these ids, in the given order; missing ids are skipped."""

    @abc.abstractmethod
    def scroll(self, namespace: str, user_id: str, *, include_superseded: bool = True) -> list[Hit]:
        """All items of one user, in no particular order.

        Args:
            include_superseded: Also return superseded items. Defaults to True.
        """

    @abc.abstractmethod
    def set_payload(self, namespace: str, user_id: str, item_id: str, fields: Mapping[str, Any]) -> None:
        """Set payload fields on one item of this user.

        Raises:
            StoreError: The user has no such item, or a field is reserved.
        """

    @abc.abstractmethod
    def count(self, namespace: str, user_id: str) -> int:
        """How many items this user has in the namespace, superseded ones included."""

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


# --- embedded backend: Qdrant Edge -------------------------------------------------------------


class EdgeStore(MemoryStore):
    """The embedded default: Qdrant Edge shards in a folder, one shard per namespace.

    Layout: ``<path>/meta.json`` (schema version, embedder name, vector size), ``<path>/.lock``
    (held while open), and ``<path>/<namespace>/`` (one Edge shard each, created on first use). Updates go through
    Edge's write-ahead log, so they survive a crash; ``close()`` flushes them to segments.

    Args:
        path: The store folder (created if missing), or ``":memory:"`` for a temporary folder
            deleted on ``close()``.
        embedder_name: Name of the embedder whose vectors are stored.
        dim: Vector size.

    Raises:
        StoreLocked: Another process (or another EdgeStore in this one) has the folder open.
        EmbeddingMismatch: The folder was built with another embedder or vector size.
        StoreError: The folder is not a personaagent store, or cannot be opened.
    """

    META_FILE = "meta.json"
    LOCK_FILE = ".lock"

    def __init__(self, path: str | Path, *, embedder_name: str, dim: int) -> None:
        super().__init__(embedder_name, dim)
        self._temporary = str(path) == MEMORY
        self.path = Path(tempfile.mkdtemp(prefix="personaagent-store-")) if self._temporary else Path(path).expanduser()
        self._write_lock = threading.RLock()
        self._closed = False
        self._lock_handle: portalocker.Lock | None = None
        self._shards: dict[str, Any] = {}
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._acquire_lock()
            self._check_meta()
        except BaseException:
            self._release()
            raise
        logger.debug("opened edge store at %s", self.path)

    def __repr__(self) -> str:
        location = MEMORY if self._temporary else str(self.path)
        return f"EdgeStore({location!r}, embedder_name={self.embedder_name!r}, dim={self.dim})"

    def _acquire_lock(self) -> None:
        lock_path = self.path / self.LOCK_FILE
        try:
            self._lock_handle = portalocker.Lock(
                str(lock_path), mode="a", timeout=0, flags=portalocker.LOCK_EX | portalocker.LOCK_NB
            )
            self._lock_handle.acquire()
        except portalocker.exceptions.LockException:
            self._lock_handle = None
            raise StoreLocked(
                f"the memory store {self.path} is in use by another process; close it first, "
                "or point this one at another folder (--store / PERSONAAGENT_STORE), or use a Qdrant "
                "server URL for several processes"
            ) from None
        except OSError as exc:
            self._lock_handle = None
            raise StoreError(f"cannot open the memory store {self.path}: {exc}") from exc

    def _check_meta(self) -> None:
        meta_path = self.path / self.META_FILE
        wanted = {"schema_version": STORE_SCHEMA_VERSION, "embedder": self.embedder_name, "dim": self.dim}
        if not meta_path.exists():
            # A temporary file of an interrupted first open is not someone else's data.
            leftovers = [
                p.name
                for p in self.path.iterdir()
                if p.name != self.LOCK_FILE and not p.name.startswith(f".{self.META_FILE}.")
            ]
            if leftovers:
                raise StoreError(
                    f"{self.path} is not a personaagent memory store (no {self.META_FILE}, but it holds "
                    f"{', '.join(sorted(leftovers)[:3])}); choose an empty or new folder"
                )
            write_bytes_atomic(meta_path, (json.dumps(wanted, indent=2) + "\n").encode("utf-8"))
            return
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {meta_path}: {exc}") from exc
        if meta.get("schema_version") != STORE_SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema version {meta.get('schema_version')!r}; this personaagent "
                f"reads version {STORE_SCHEMA_VERSION}"
            )
        if meta.get("embedder") != self.embedder_name or meta.get("dim") != self.dim:
            raise EmbeddingMismatch(
                f"the memory store {self.path} was built with embedder {meta.get('embedder')!r} "
                f"({meta.get('dim')} dimensions), not {self.embedder_name!r} ({self.dim}); use the same "
                "embedder, or a new store folder and ingest the history again"
            )

    def _open_shard(self, shard_path: Path) -> Any:
        import qdrant_edge as qe

        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=self.dim, distance=qe.Distance.Cosine),
            # A temporary store needs no crash recovery, so it skips the write-ahead log.
            wal_enabled=not self._temporary,
        )
        try:
            if (shard_path / "edge_config.json").exists():
                shard = qe.EdgeShard.load(str(shard_path))
            else:
                shard = qe.EdgeShard.create(str(shard_path), config)
                # is_tenant lets Qdrant lay out and search each user's points together.
                shard.update(qe.UpdateOperation.create_field_index(USER_FIELD, qe.KeywordIndexParams(is_tenant=True)))
        except Exception as exc:
            raise StoreError(f"cannot open the Qdrant Edge shard {shard_path}: {exc}") from exc
        return shard

    def _shard(self, namespace: str) -> Any:
        if self._closed:
            raise StoreError("the memory store is closed")
        self._check_namespace(namespace)
        shard = self._shards.get(namespace)
        if shard is None:
            # Shards open on first use: opening one costs ~0.1-0.3 s, and most runs touch only
            # the episodic namespace.
            with self._write_lock:
                shard = self._shards.get(namespace)
                if shard is None:
                    shard = self._shards[namespace] = self._open_shard(self.path / namespace)
        return shard

    @staticmethod
    def _filter(user_id: str, include_superseded: bool) -> Any:
        import qdrant_edge as qe

        must: list[Any] = [qe.FieldCondition(key=USER_FIELD, match=qe.MatchValue(user_id))]
        if not include_superseded:
            must.append(qe.IsEmptyCondition(key=SUPERSEDED_FIELD))
        return qe.Filter(must=must)

    def upsert(self, namespace: str, user_id: str, items: Sequence[StoredItem]) -> None:
        import qdrant_edge as qe

        shard = self._shard(namespace)
        self._check_user(user_id)
        points = [
            qe.Point(
                id=point_id(namespace, user_id, item.id),
                vector=self._vector(item.vector),
                payload=self._payload(user_id, item),
            )
            for item in items
        ]
        if points:
            with self._write_lock:
                shard.update(qe.UpdateOperation.upsert_points(points))

    def search(
        self,
        namespace: str,
        user_id: str,
        vector: np.ndarray | Sequence[float],
        k: int,
        *,
        include_superseded: bool = False,
    ) -> list[Hit]:
        import qdrant_edge as qe

        shard = self._shard(namespace)
        self._check_user(user_id)
        if k < 1:
            return []
        request = qe.QueryRequest(
            limit=k,
            query=qe.Query.Nearest(self._vector(vector)),
            filter=self._filter(user_id, include_superseded),
            with_payload=True,
            with_vector=False,
        )
        return [self._hit(p.payload, float(p.score)) for p in shard.query(request) if self._owned(p.payload, user_id)]

    def get(self, namespace: str, user_id: str, item_ids: Sequence[str]) -> list[Hit]:
        shard = self._shard(namespace)
        self._check_user(user_id)
        if not item_ids:
            return []
        records = shard.retrieve([point_id(namespace, user_id, i) for i in item_ids], True, False)
        payloads = (r.payload for r in records)
        found = {p[ITEM_FIELD]: p for p in payloads if p is not None and self._owned(p, user_id)}
        return [self._hit(found[i]) for i in dict.fromkeys(item_ids) if i in found]

    def scroll(self, namespace: str, user_id: str, *, include_superseded: bool = True) -> list[Hit]:
        import qdrant_edge as qe

        shard = self._shard(namespace)
        self._check_user(user_id)
        hits: list[Hit] = []
        offset = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=self._filter(user_id, include_superseded),
                    with_payload=True,
                    with_vector=False,
                )
            )
            hits.extend(self._hit(r.payload) for r in records if self._owned(r.payload, user_id))
            if offset is None:
                return hits

    def set_payload(self, namespace: str, user_id: str, item_id: str, fields: Mapping[str, Any]) -> None:
        import qdrant_edge as qe

        shard = self._shard(namespace)
        self._check_user(user_id)
        if any(key in _RESERVED for key in fields):
            raise StoreError(f"payload fields {', '.join(_RESERVED)} are reserved for the store")
        pid = point_id(namespace, user_id, item_id)
        with self._write_lock:
            if not [r for r in shard.retrieve([pid], True, False) if self._owned(r.payload, user_id)]:
                raise StoreError(f"user {user_id!r} has no item {item_id!r} in {namespace!r}")
            shard.update(qe.UpdateOperation.set_payload([pid], dict(fields)))

    def count(self, namespace: str, user_id: str) -> int:
        import qdrant_edge as qe

        shard = self._shard(namespace)
        self._check_user(user_id)
        return int(shard.count(qe.CountRequest(exact=True, filter=self._filter(user_id, True))))

    def user_ids(self, namespace: str) -> list[str]:
        import qdrant_edge as qe

        shard = self._shard(namespace)
        # A facet lists distinct values of the indexed user_id field; the limit covers the
        # worst case of one point per user.
        limit = max(1, int(shard.info().points_count))
        response = shard.facet(qe.FacetRequest(key=USER_FIELD, limit=limit, exact=True))
        return sorted(str(h.value) for h in response if h.count > 0)

    def delete_user(self, user_id: str) -> None:
        import qdrant_edge as qe

        self._check_user(user_id)
        for namespace in NAMESPACES:
            shard = self._shard(namespace)
            with self._write_lock:
                shard.update(qe.UpdateOperation.delete_points_by_filter(self._filter(user_id, True)))

    def flush(self) -> None:
        """Write pending updates to the segments (the WAL already makes them durable)."""
        for shard in list(self._shards.values()):
            shard.flush()

    def _release(self) -> None:
        for shard in self._shards.values():
            try:
                shard.flush()
                shard.close()
            except Exception:  # closing must release the lock even if a shard is broken
                logger.exception("failed to close an edge shard in %s", self.path)
        self._shards = {}
        if self._lock_handle is not None:
            self._lock_handle.release()
            self._lock_handle = None
        if self._temporary:
            shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._release()


# --- server backend: qdrant-client -------------------------------------------------------------


class QdrantServerStore(MemoryStore):
    """A Qdrant server through qdrant-client: the path for many processes or many users.

    One collection per namespace (``<prefix><namespace>``), multitenant on a ``user_id``
    keyword index with ``is_tenant=True``. The embedder's name is kept in the collections'
    metadata, so a store built with another model is refused. ``url=":memory:"`` runs
    qdrant-client's local in-process mode (same API, brute-force search; for tests).

    Args:
        url: The server, e.g. ``"http://localhost:6333"``, or ``":memory:"``.
        embedder_name: Name of the embedder whose vectors are stored.
        dim: Vector size.
        api_key: Server API key. Defaults to None.
        collection_prefix: Prepended to namespace names. Defaults to ``"personaagent_"``.
        timeout: Request timeout in seconds. Defaults to 10.

    Raises:
        EmbeddingMismatch: Existing collections were built with another embedder or size.
        StoreError: The server cannot be reached.
    """

    def __init__(
        self,
        url: str,
        *,
        embedder_name: str,
        dim: int,
        api_key: str | None = None,
        collection_prefix: str = "personaagent_",
        timeout: int = 10,
    ) -> None:
        super().__init__(embedder_name, dim)
        from qdrant_client import QdrantClient

        self.url = url
        self._prefix = collection_prefix
        self._closed = False
        self._client = (
            QdrantClient(location=MEMORY) if url == MEMORY else QdrantClient(url=url, api_key=api_key, timeout=timeout)
        )
        try:
            for namespace in NAMESPACES:
                self._ensure_collection(namespace)
        except EmbeddingMismatch:
            self._client.close()
            raise
        except Exception as exc:
            self._client.close()
            raise StoreError(f"cannot use the Qdrant server at {url}: {exc}") from exc

    def __repr__(self) -> str:
        return f"QdrantServerStore({self.url!r}, embedder_name={self.embedder_name!r}, dim={self.dim})"

    def _collection(self, namespace: str) -> str:
        if self._closed:
            raise StoreError("the memory store is closed")
        self._check_namespace(namespace)
        return self._prefix + namespace

    def _ensure_collection(self, namespace: str) -> None:
        from qdrant_client import models

        name = self._collection(namespace)
        if self._client.collection_exists(name):
            info = self._client.get_collection(name)
            vectors = info.config.params.vectors
            size = vectors.size if isinstance(vectors, models.VectorParams) else None
            embedder = (info.config.metadata or {}).get("embedder")
            if size != self.dim or embedder != self.embedder_name:
                raise EmbeddingMismatch(
                    f"the Qdrant collection {name!r} at {self.url} was built with embedder {embedder!r} "
                    f"({size} dimensions), not {self.embedder_name!r} ({self.dim}); use the same embedder "
                    "or another collection_prefix"
                )
            return
        self._client.create_collection(
            name,
            vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
            metadata={"embedder": self.embedder_name, "dim": self.dim, "schema_version": STORE_SCHEMA_VERSION},
        )
        if self.url != MEMORY:  # local mode ignores payload indexes and warns about them
            self._client.create_payload_index(
                name,
                USER_FIELD,
                field_schema=models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
            )

    @staticmethod
    def _filter(user_id: str, include_superseded: bool) -> Any:
        from qdrant_client import models

        must: list[Any] = [models.FieldCondition(key=USER_FIELD, match=models.MatchValue(value=user_id))]
        if not include_superseded:
            must.append(models.IsEmptyCondition(is_empty=models.PayloadField(key=SUPERSEDED_FIELD)))
        return models.Filter(must=must)

    def upsert(self, namespace: str, user_id: str, items: Sequence[StoredItem]) -> None:
        from qdrant_client import models

        collection = self._collection(namespace)
        self._check_user(user_id)
        points = [
            models.PointStruct(
                id=point_id(namespace, user_id, item.id),
                vector=self._vector(item.vector),
                payload=self._payload(user_id, item),
            )
            for item in items
        ]
        if points:
            self._client.upsert(collection, points=points, wait=True)

    def search(
        self,
        namespace: str,
        user_id: str,
        vector: np.ndarray | Sequence[float],
        k: int,
        *,
        include_superseded: bool = False,
    ) -> list[Hit]:
        collection = self._collection(namespace)
        self._check_user(user_id)
        if k < 1:
            return []
        response = self._client.query_points(
            collection,
            query=self._vector(vector),
            query_filter=self._filter(user_id, include_superseded),
            limit=k,
            with_payload=True,
            with_vectors=False,
        )
        return [self._hit(p.payload, float(p.score)) for p in response.points if self._owned(p.payload, user_id)]

    def get(self, namespace: str, user_id: str, item_ids: Sequence[str]) -> list[Hit]:
        collection = self._collection(namespace)
        self._check_user(user_id)
        if not item_ids:
            return []
        records = self._client.retrieve(
            collection, ids=[point_id(namespace, user_id, i) for i in item_ids], with_payload=True, with_vectors=False
        )
        payloads = (r.payload for r in records)
        found = {p[ITEM_FIELD]: p for p in payloads if p is not None and self._owned(p, user_id)}
        return [self._hit(found[i]) for i in dict.fromkeys(item_ids) if i in found]

    def scroll(self, namespace: str, user_id: str, *, include_superseded: bool = True) -> list[Hit]:
        collection = self._collection(namespace)
        self._check_user(user_id)
        hits: list[Hit] = []
        offset = None
        while True:
            records, offset = self._client.scroll(
                collection,
                scroll_filter=self._filter(user_id, include_superseded),
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=True,
                with_vectors=False,
            )
            hits.extend(self._hit(r.payload) for r in records if self._owned(r.payload, user_id))
            if offset is None:
                return hits

    def set_payload(self, namespace: str, user_id: str, item_id: str, fields: Mapping[str, Any]) -> None:
        collection = self._collection(namespace)
        self._check_user(user_id)
        if any(key in _RESERVED for key in fields):
            raise StoreError(f"payload fields {', '.join(_RESERVED)} are reserved for the store")
        if not self.get(namespace, user_id, [item_id]):
            raise StoreError(f"user {user_id!r} has no item {item_id!r} in {namespace!r}")
        self._client.set_payload(
            collection, payload=dict(fields), points=[point_id(namespace, user_id, item_id)], wait=True
        )

    def count(self, namespace: str, user_id: str) -> int:
        collection = self._collection(namespace)
        self._check_user(user_id)
        return int(self._client.count(collection, count_filter=self._filter(user_id, True), exact=True).count)

    def user_ids(self, namespace: str) -> list[str]:
        collection = self._collection(namespace)
        limit = max(1, int(self._client.count(collection, exact=True).count))
        response = self._client.facet(collection, key=USER_FIELD, limit=limit, exact=True)
        return sorted(str(h.value) for h in response.hits if h.count > 0)

    def delete_user(self, user_id: str) -> None:
        from qdrant_client import models

        self._check_user(user_id)
        for namespace in NAMESPACES:
            self._client.delete(
                self._collection(namespace),
                points_selector=models.FilterSelector(filter=self._filter(user_id, True)),
                wait=True,
            )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()


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
