from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personaagent.errors import EmbeddingMismatch, StoreError, StoreLocked
from personaagent.memory.store import (
    EPISODIC,
    KNOWLEDGE,
    EdgeStore,
    MemoryStore,
    QdrantServerStore,
    StoredItem,
    open_store,
)
from personaagent.records import validate_user_id
from personaagent.runtime.embedder import HashingEmbedder

EMB = HashingEmbedder(64)
ODD_IDS = ["*", "x" * 256, "ユーザー🙂", "user with spaces", "a'b\"c", "%", "*_suffix"]


def _items(embedder: HashingEmbedder, texts: list[str], prefix: str = "i") -> list[StoredItem]:
    vectors = embedder.embed_batch(texts)
    return [StoredItem(f"{prefix}{n}", v, {"text": t}) for n, (t, v) in enumerate(zip(texts, vectors))]


@pytest.fixture(params=["edge", "qdrant-client-local"])
def any_store(request: pytest.FixtureRequest) -> Iterator[MemoryStore]:
    """Each behaviour test runs on both backends."""
    store = (
        EdgeStore(":memory:", embedder_name=EMB.name, dim=EMB.dim)
        if request.param == "edge"
        else QdrantServerStore(":memory:", embedder_name=EMB.name, dim=EMB.dim)
    )
    yield store
    store.close()


def test_two_users_are_isolated(any_store: MemoryStore) -> None:
    any_store.upsert(EPISODIC, "alice", _items(EMB, ["alice likes jazz", "alice hates rain"]))
    any_store.upsert(EPISODIC, "bob", _items(EMB, ["bob likes jazz", "bob loves rain"]))
    # The adversarial query is bob's text verbatim: alice still only sees her own items.
    hits = any_store.search(EPISODIC, "alice", EMB.embed("bob likes jazz"), k=10)
    assert {h.payload["text"] for h in hits} == {"alice likes jazz", "alice hates rain"}
    assert all(h.payload["user_id"] == "alice" for h in hits)
    assert any_store.count(EPISODIC, "alice") == 2
    assert any_store.get(EPISODIC, "alice", ["i0", "i1"])[0].payload["text"] == "alice likes jazz"
    assert any_store.search(EPISODIC, "carol", EMB.embed("jazz"), k=5) == []
    assert any_store.user_ids(EPISODIC) == ["alice", "bob"]


def test_namespaces_are_separate(any_store: MemoryStore) -> None:
    any_store.upsert(EPISODIC, "u", _items(EMB, ["an interaction"]))
    any_store.upsert(KNOWLEDGE, "u", _items(EMB, ["a document"]))
    assert [h.payload["text"] for h in any_store.scroll(KNOWLEDGE, "u")] == ["a document"]
    assert any_store.user_ids(KNOWLEDGE) == ["u"]
    with pytest.raises(StoreError, match="namespace"):
        any_store.count("semantic", "u")


@pytest.mark.parametrize("user_id", ODD_IDS)
def test_odd_user_ids_match_exactly(any_store: MemoryStore, user_id: str) -> None:
    any_store.upsert(EPISODIC, user_id, _items(EMB, ["mine"]))
    any_store.upsert(EPISODIC, "someone", _items(EMB, ["theirs"]))
    any_store.upsert(EPISODIC, user_id[:-1] or "y", _items(EMB, ["prefix neighbour"]))
    assert [h.payload["text"] for h in any_store.search(EPISODIC, user_id, EMB.embed("theirs"), k=10)] == ["mine"]
    assert [h.payload["text"] for h in any_store.scroll(EPISODIC, user_id)] == ["mine"]
    assert user_id in any_store.user_ids(EPISODIC)


@pytest.mark.parametrize("bad", ["", "   ", "x" * 257, "tab\there"])
def test_invalid_user_ids_are_rejected(any_store: MemoryStore, bad: str) -> None:
    with pytest.raises(StoreError, match="invalid user id"):
        any_store.upsert(EPISODIC, bad, _items(EMB, ["x"]))
    with pytest.raises(StoreError):
        any_store.search(EPISODIC, bad, EMB.embed("x"), k=1)


def test_same_item_id_for_two_users_does_not_collide_and_upsert_is_idempotent(any_store: MemoryStore) -> None:
    any_store.upsert(EPISODIC, "a", [StoredItem("same", EMB.embed("a's"), {"text": "a's"})])
    any_store.upsert(EPISODIC, "b", [StoredItem("same", EMB.embed("b's"), {"text": "b's"})])
    any_store.upsert(EPISODIC, "a", [StoredItem("same", EMB.embed("a's"), {"text": "a's v2"})])
    assert any_store.count(EPISODIC, "a") == 1
    assert any_store.get(EPISODIC, "a", ["same"])[0].payload["text"] == "a's v2"
    assert any_store.get(EPISODIC, "b", ["same"])[0].payload["text"] == "b's"


def test_payload_cannot_claim_another_user(any_store: MemoryStore) -> None:
    with pytest.raises(StoreError, match="written for"):
        any_store.upsert(EPISODIC, "a", [StoredItem("x", EMB.embed("x"), {"user_id": "b"})])
    with pytest.raises(StoreError, match="reserved"):
        any_store.upsert(EPISODIC, "a", [StoredItem("x", EMB.embed("x"), {"item_id": "y"})])


def test_superseded_items_are_hidden_from_search_but_kept(any_store: MemoryStore) -> None:
    any_store.upsert(EPISODIC, "u", _items(EMB, ["old fact", "new fact"]))
    any_store.set_payload(EPISODIC, "u", "i0", {"superseded_by": "i1"})
    assert [h.id for h in any_store.search(EPISODIC, "u", EMB.embed("old fact"), k=5)] == ["i1"]
    assert len(any_store.search(EPISODIC, "u", EMB.embed("old fact"), k=5, include_superseded=True)) == 2
    assert len(any_store.scroll(EPISODIC, "u")) == 2
    assert len(any_store.scroll(EPISODIC, "u", include_superseded=False)) == 1
    with pytest.raises(StoreError, match="no item"):
        any_store.set_payload(EPISODIC, "other", "i0", {"superseded_by": "x"})


def test_delete_user_removes_only_that_user(any_store: MemoryStore) -> None:
    any_store.upsert(EPISODIC, "a", _items(EMB, ["a1"]))
    any_store.upsert(KNOWLEDGE, "a", _items(EMB, ["a doc"]))
    any_store.upsert(EPISODIC, "b", _items(EMB, ["b1"]))
    any_store.delete_user("a")
    assert any_store.count(EPISODIC, "a") == any_store.count(KNOWLEDGE, "a") == 0
    assert any_store.count(EPISODIC, "b") == 1


def test_wrong_vector_size_is_refused(any_store: MemoryStore) -> None:
    with pytest.raises(EmbeddingMismatch):
        any_store.upsert(EPISODIC, "u", [StoredItem("x", np.ones(3, dtype=np.float32))])


def test_scroll_pages_through_many_items(memory_store: MemoryStore) -> None:
    texts = [f"text number {n}" for n in range(2500)]
    memory_store.upsert(EPISODIC, "u", _items(EMB, texts))
    assert len({h.id for h in memory_store.scroll(EPISODIC, "u")}) == 2500


def _valid_user_id(user_id: str) -> bool:
    try:
        validate_user_id(user_id)
    except ValueError:
        return False
    return True


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.dictionaries(
        keys=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=20).filter(
            _valid_user_id
        ),
        values=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5),
        min_size=2,
        max_size=8,
    )
)
def test_property_every_search_returns_only_own_items(data: dict[str, list[str]]) -> None:
    with EdgeStore(":memory:", embedder_name=EMB.name, dim=EMB.dim) as store:
        for user, texts in data.items():
            store.upsert(EPISODIC, user, _items(EMB, texts, prefix=f"{user}-"))
        for user, texts in data.items():
            for other_texts in data.values():
                for query in other_texts[:2]:
                    hits = store.search(EPISODIC, user, EMB.embed(query), k=10)
                    assert {h.payload["user_id"] for h in hits} <= {user}
                    assert len(hits) == len(texts)


def test_congruence_edge_vs_qdrant_client_local() -> None:
    rng = np.random.default_rng(7)
    users = [f"user{n}" for n in range(5)]
    edge = EdgeStore(":memory:", embedder_name="random", dim=32)
    local = QdrantServerStore(":memory:", embedder_name="random", dim=32)
    try:
        for user in users:
            vectors = rng.normal(size=(60, 32)).astype(np.float32)
            items = [StoredItem(f"{user}-{n}", v, {"n": n}) for n, v in enumerate(vectors)]
            edge.upsert(EPISODIC, user, items)
            local.upsert(EPISODIC, user, items)
        for user in users:
            for query in rng.normal(size=(10, 32)).astype(np.float32):
                a = edge.search(EPISODIC, user, query, k=5)
                b = local.search(EPISODIC, user, query, k=5)
                assert [h.id for h in a] == [h.id for h in b]
                np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-4)
            assert edge.count(EPISODIC, user) == local.count(EPISODIC, user) == 60
        assert edge.user_ids(EPISODIC) == local.user_ids(EPISODIC) == users
    finally:
        edge.close()
        local.close()


# --- persistence, locking and embedder checks of the folder store -------------------------------


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=60, check=False
    )


WRITER = """
    import sys
    from personaagent.memory.store import EdgeStore, StoredItem, EPISODIC
    from personaagent.runtime.embedder import HashingEmbedder
    emb = HashingEmbedder(64)
    store = EdgeStore(sys.argv[1], embedder_name=emb.name, dim=emb.dim)
    store.upsert(EPISODIC, "ユーザー", [StoredItem("a", emb.embed("persisted text"), {"text": "persisted text"})])
    if sys.argv[2] == "close":
        store.close()
    else:
        import os
        os._exit(0)  # a crash: no close, no flush; the write-ahead log must carry the data
"""


@pytest.mark.parametrize("ending", ["close", "crash"])
def test_persists_across_process_restart(store_path: Path, ending: str) -> None:
    result = _run(WRITER, str(store_path), ending)
    assert result.returncode == 0, result.stderr
    with open_store(str(store_path), embedder_name=EMB.name, dim=EMB.dim) as store:
        hits = store.search(EPISODIC, "ユーザー", EMB.embed("persisted"), k=3)
        assert [h.payload["text"] for h in hits] == ["persisted text"]


HOLDER = """
    import sys
    from personaagent.memory.store import EdgeStore
    store = EdgeStore(sys.argv[1], embedder_name="hashing-64", dim=64)
    print("ready", flush=True)
    sys.stdin.readline()
    store.close()
"""


def test_second_process_gets_store_locked(store_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(store_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLocked, match="in use by another process"):
            EdgeStore(store_path, embedder_name=EMB.name, dim=EMB.dim)
    finally:
        holder.communicate("\n", timeout=30)
    # Once the holder is gone the folder opens normally.
    EdgeStore(store_path, embedder_name=EMB.name, dim=EMB.dim).close()


def test_same_process_second_open_is_locked_too(store_path: Path) -> None:
    with EdgeStore(store_path, embedder_name=EMB.name, dim=EMB.dim):
        with pytest.raises(StoreLocked):
            EdgeStore(store_path, embedder_name=EMB.name, dim=EMB.dim)


@pytest.mark.parametrize(("name", "dim"), [("hashing-64", 128), ("other-model", 64)])
def test_embedding_mismatch_names_both_embedders(store_path: Path, name: str, dim: int) -> None:
    EdgeStore(store_path, embedder_name=EMB.name, dim=EMB.dim).close()
    with pytest.raises(EmbeddingMismatch, match="hashing-64") as excinfo:
        EdgeStore(store_path, embedder_name=name, dim=dim)
    assert "new store folder" in str(excinfo.value)
    # The refused open released the lock.
    EdgeStore(store_path, embedder_name=EMB.name, dim=EMB.dim).close()


def test_server_store_refuses_other_embedder() -> None:
    with QdrantServerStore(":memory:", embedder_name="a", dim=8) as store:
        store._ensure_collection(EPISODIC)  # idempotent for the same embedder
        store.embedder_name = "b"
        with pytest.raises(EmbeddingMismatch, match="'a'"):
            store._ensure_collection(EPISODIC)


def test_foreign_folder_is_refused(store_path: Path) -> None:
    store_path.mkdir()
    (store_path / "thesis.txt").write_text("precious")
    with pytest.raises(StoreError, match="not a personaagent memory store"):
        EdgeStore(store_path, embedder_name=EMB.name, dim=EMB.dim)


def test_memory_store_is_deleted_on_close() -> None:
    store = open_store(":memory:", embedder_name=EMB.name, dim=EMB.dim)
    assert isinstance(store, EdgeStore)
    folder = store.path
    store.close()
    store.close()
    assert not folder.exists()
    with pytest.raises(StoreError, match="closed"):
        store.count(EPISODIC, "u")


@pytest.mark.parametrize("location", ["", "  ", "ftp://host/store", "qdrant://x"])
def test_open_store_rejects_bad_locations(location: str) -> None:
    with pytest.raises(StoreError):
        open_store(location, embedder_name=EMB.name, dim=EMB.dim)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_open_store_url_unreachable_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot use the Qdrant server"):
        open_store("http://127.0.0.1:9", embedder_name=EMB.name, dim=EMB.dim)
