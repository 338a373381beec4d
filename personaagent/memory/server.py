"""The server backend of the memory store: a Qdrant server (or qdrant-client's local mode)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from personaagent.config import MEMORY
from personaagent.errors import EmbeddingMismatch, StoreError
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

__all__ = ["QdrantServerStore"]

logger = logging.getLogger(__name__)


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
    def _filter(
        user_id: str, include_superseded: bool, before: datetime | None = None, hidden: Sequence[str] = ()
    ) -> Any:
        from qdrant_client import models

        must: list[Any] = [models.FieldCondition(key=USER_FIELD, match=models.MatchValue(value=user_id))]
        if not include_superseded:
            must.append(models.IsEmptyCondition(is_empty=models.PayloadField(key=SUPERSEDED_FIELD)))
        should: list[Any] | None = (
            [
                models.IsEmptyCondition(is_empty=models.PayloadField(key=TIME_FIELD)),
                models.FieldCondition(key=TIME_FIELD, range=models.DatetimeRange(lt=before)),
            ]
            if before is not None
            else None
        )
        must_not: list[Any] | None = [models.HasIdCondition(has_id=list(hidden))] if hidden else None
        return models.Filter(must=must, should=should, must_not=must_not)

    def _upsert(self, namespace: str, user_id: str, items: Sequence[StoredItem]) -> None:
        from qdrant_client import models

        collection = self._collection(namespace)
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
        collection = self._collection(namespace)
        response = self._client.query_points(
            collection,
            query=self._vector(vector),
            query_filter=self._filter(user_id, include_superseded, before, hidden),
            limit=k,
            with_payload=True,
            with_vectors=False,
        )
        return [self._hit(p.payload, float(p.score)) for p in response.points if self._owned(p.payload, user_id)]

    def _get(self, namespace: str, user_id: str, item_ids: Sequence[str]) -> list[Hit]:
        collection = self._collection(namespace)
        records = self._client.retrieve(
            collection, ids=[point_id(namespace, user_id, i) for i in item_ids], with_payload=True, with_vectors=False
        )
        payloads = (r.payload for r in records)
        found = {p[ITEM_FIELD]: p for p in payloads if p is not None and self._owned(p, user_id)}
        return [self._hit(found[i]) for i in dict.fromkeys(item_ids) if i in found]

    def _scroll(self, namespace: str, user_id: str, *, include_superseded: bool = True) -> list[Hit]:
        collection = self._collection(namespace)
        hits: list[Hit] = []
        offset = None
        while True:
            records, offset = self._client.scroll(
                collection,
                scroll_filter=self._filter(user_id, include_superseded),
                limit=SCROLL_PAGE,
                offset=offset,
                with_payload=True,
                with_vectors=False,
            )
            hits.extend(self._hit(r.payload) for r in records if self._owned(r.payload, user_id))
            if offset is None:
                return hits

    def _set_payload(self, namespace: str, user_id: str, item_id: str, fields: Mapping[str, Any]) -> None:
        collection = self._collection(namespace)
        if not self.get(namespace, user_id, [item_id]):
            raise StoreError(f"user {user_id!r} has no item {item_id!r} in {namespace!r}")
        self._client.set_payload(
            collection, payload=dict(fields), points=[point_id(namespace, user_id, item_id)], wait=True
        )

    def _count(self, namespace: str, user_id: str) -> int:
        collection = self._collection(namespace)
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


