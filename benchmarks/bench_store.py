"""Benchmark the embedder and the memory store backends.

Prints embeddings/s of the local embedder on 100-word texts, then upsert points/s and
filtered-query p50/p95 latency at 1k and 10k memories over 20 users, for the embedded
EdgeStore and for qdrant-client local mode (QdrantServerStore(":memory:")).

Run: python benchmarks/bench_store.py [--skip-embedder] [--queries 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from personaagent.memory.store import EPISODIC, EdgeStore, MemoryStore, QdrantServerStore, StoredItem
from personaagent.runtime.embedder import LocalMiniLMEmbedder

DIM = 384
USERS = [f"user-{n:02d}" for n in range(20)]
WORDS = (
    "the a movie film great bad actor plot story music song rock jazz food pizza pasta travel city "
    "beach mountain book novel author chapter game team score win lose weather rain sun cold hot"
).split()


def bench_embedder(n_texts: int) -> None:
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=100)) for _ in range(n_texts)]
    with tempfile.TemporaryDirectory() as home:
        embedder = LocalMiniLMEmbedder(Path(home))
        start = time.perf_counter()
        embedder.embed("warm up")
        load = time.perf_counter() - start
        start = time.perf_counter()
        embedder.embed_batch(texts)
        elapsed = time.perf_counter() - start
        single = []
        for text in texts[:20]:
            t0 = time.perf_counter()
            embedder.embed(text)
            single.append(time.perf_counter() - t0)
    print(
        f"local embedder: first load {load:.2f} s; batch of {n_texts} 100-word texts: "
        f"{n_texts / elapsed:.1f} texts/s; one text: p50 {np.median(single) * 1000:.1f} ms"
    )


def bench_store(label: str, store: MemoryStore, n_points: int, n_queries: int) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(n_points, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    per_user = n_points // len(USERS)
    start = time.perf_counter()
    for u, user in enumerate(USERS):
        chunk = vectors[u * per_user : (u + 1) * per_user]
        payload = {"stored_at": "2024-01-01T00:00:00Z", "superseded_by": None}
        items = [StoredItem(f"m{i}", v, {"query": f"text {i}", **payload}) for i, v in enumerate(chunk)]
        for b in range(0, len(items), 256):  # ingest in batches, like `personaagent ingest`
            store.upsert(EPISODIC, user, items[b : b + 256])
    upsert_rate = per_user * len(USERS) / (time.perf_counter() - start)
    queries = rng.normal(size=(n_queries, DIM)).astype(np.float32)
    store.search(EPISODIC, USERS[0], queries[0], k=5)  # warm up
    latencies = []
    for q, query in enumerate(queries):
        t0 = time.perf_counter()
        hits = store.search(EPISODIC, USERS[q % len(USERS)], query, k=5)
        latencies.append(time.perf_counter() - t0)
        assert len(hits) == 5
    p50, p95 = np.percentile(latencies, [50, 95]) * 1000
    print(
        f"{label:<36} {n_points:>6} pts  upsert {upsert_rate:>8.0f} pts/s  "
        f"query p50 {p50:6.2f} ms  p95 {p95:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-embedder", action="store_true")
    parser.add_argument("--texts", type=int, default=64, help="texts for the embedder benchmark")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    if not args.skip_embedder:
        bench_embedder(args.texts)
    for n_points in (1_000, 10_000):
        with tempfile.TemporaryDirectory() as folder:
            with EdgeStore(Path(folder) / "store", embedder_name="bench", dim=DIM) as store:
                bench_store("EdgeStore (folder, WAL on)", store, n_points, args.queries)
        with EdgeStore(":memory:", embedder_name="bench", dim=DIM) as store:
            bench_store("EdgeStore (:memory:, no WAL)", store, n_points, args.queries)
        with QdrantServerStore(":memory:", embedder_name="bench", dim=DIM) as store:
            bench_store("qdrant-client local mode (:memory:)", store, n_points, args.queries)


if __name__ == "__main__":
    main()
