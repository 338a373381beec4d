"""The embedded backend of the memory store: Qdrant Edge shards in a folder."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import portalocker
from pydantic import BaseModel, ConfigDict

from personaagent._files import read_model, write_bytes_atomic
from personaagent.config import MEMORY
from personaagent.errors import EmbeddingMismatch, StoreError, StoreLocked, UnreadableFile
from personaagent.memory.base import (
    ITEM_FIELD,
    NAMESPACES,
    SCROLL_PAGE,
    STORE_SCHEMA_VERSION,
    SUPERSEDED_FIELD,
    TIME_FIELD,
    USER_FIELD,
    Hit,
    MemoryStore,
    StoredItem,
    point_id,
)

__all__ = ["EdgeStore"]

logger = logging.getLogger(__name__)


class _StoreMeta(BaseModel):
    """A store folder's settings file (meta.json): what its vectors were built with.

    Extra fields are allowed: a later store schema may add some, and its folder must then be
    refused for its version number, not as unreadable.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: int
    embedder: str
    dim: int


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
        UnreadableFile: Its settings file (meta.json) is not a settings object; it is left as is.
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
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"the store {self.path} is a file, not a folder; point --store at a folder")
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
            meta = read_model(meta_path, _StoreMeta, "memory store settings")
        except UnreadableFile as exc:
            # Without its settings file the folder is refused as "not a store", so removing the
            # file loses the store: say what to write into it instead.
            raise UnreadableFile(
                f"{exc}; if the store was built with the embedder now set, write {json.dumps(wanted)} into it"
            ) from None
        if meta.schema_version != STORE_SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema version {meta.schema_version!r}; this personaagent "
                f"reads version {STORE_SCHEMA_VERSION}"
            )
        if meta.embedder != self.embedder_name or meta.dim != self.dim:
            raise EmbeddingMismatch(
                f"the memory store {self.path} was built with embedder {meta.embedder!r} "
                f"({meta.dim} dimensions), not {self.embedder_name!r} ({self.dim}); use the same "
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
    def _filter(
        user_id: str, include_superseded: bool, before: datetime | None = None, hidden: Sequence[str] = ()
    ) -> Any:
        import qdrant_edge as qe

        must: list[Any] = [qe.FieldCondition(key=USER_FIELD, match=qe.MatchValue(user_id))]
        if not include_superseded:
            must.append(qe.IsEmptyCondition(key=SUPERSEDED_FIELD))
        should: list[Any] | None = (
            [
                qe.IsEmptyCondition(key=TIME_FIELD),
                qe.FieldCondition(key=TIME_FIELD, range=qe.RangeDateTime(lt=before.isoformat())),
            ]
            if before is not None
            else None
        )
        must_not: list[Any] | None = [qe.HasIdCondition(set(hidden))] if hidden else None
        return qe.Filter(must=must, should=should, must_not=must_not)

    def _upsert(self, namespace: str, user_id: str, items: Sequence[StoredItem]) -> None:
        import qdrant_edge as qe

        shard = self._shard(namespace)
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
        import qdrant_edge as qe

        shard = self._shard(namespace)
        request = qe.QueryRequest(
            limit=k,
            query=qe.Query.Nearest(self._vector(vector)),
            filter=self._filter(user_id, include_superseded, before, hidden),
            with_payload=True,
            with_vector=False,
        )
        return [self._hit(p.payload, float(p.score)) for p in shard.query(request) if self._owned(p.payload, user_id)]

    def _get(self, namespace: str, user_id: str, item_ids: Sequence[str]) -> list[Hit]:
        shard = self._shard(namespace)
        records = shard.retrieve([point_id(namespace, user_id, i) for i in item_ids], True, False)
        payloads = (r.payload for r in records)
        found = {p[ITEM_FIELD]: p for p in payloads if p is not None and self._owned(p, user_id)}
        return [self._hit(found[i]) for i in dict.fromkeys(item_ids) if i in found]

    def _scroll(self, namespace: str, user_id: str, *, include_superseded: bool = True) -> list[Hit]:
        import qdrant_edge as qe

        shard = self._shard(namespace)
        hits: list[Hit] = []
        offset = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=SCROLL_PAGE,
                    filter=self._filter(user_id, include_superseded),
                    with_payload=True,
                    with_vector=False,
                )
            )
            hits.extend(self._hit(r.payload) for r in records if self._owned(r.payload, user_id))
            if offset is None:
                return hits

    def _set_payload(self, namespace: str, user_id: str, item_id: str, fields: Mapping[str, Any]) -> None:
        import qdrant_edge as qe

        shard = self._shard(namespace)
        pid = point_id(namespace, user_id, item_id)
        with self._write_lock:
            if not [r for r in shard.retrieve([pid], True, False) if self._owned(r.payload, user_id)]:
                raise StoreError(f"user {user_id!r} has no item {item_id!r} in {namespace!r}")
            shard.update(qe.UpdateOperation.set_payload([pid], dict(fields)))

    def _count(self, namespace: str, user_id: str) -> int:
        import qdrant_edge as qe

        shard = self._shard(namespace)
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


