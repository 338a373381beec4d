from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pydantic
import pytest

from personaagent.errors import EmbeddingMismatch, UnknownUser
from personaagent.memory import EpisodicMemory, KnowledgeBase, QdrantServerStore
from personaagent.memory.store import EPISODIC, MemoryStore
from personaagent.records import Interaction, Memory
from personaagent.runtime.embedder import HashingEmbedder

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _interaction(user: str, query: str, response: str = "r", days: int | None = None, **metadata) -> Interaction:
    timestamp = None if days is None else T0 + timedelta(days=days)
    return Interaction(user_id=user, query=query, response=response, timestamp=timestamp, metadata=metadata)


@pytest.fixture
def episodic(memory_store: MemoryStore, hashing_embedder: HashingEmbedder) -> EpisodicMemory:
    return EpisodicMemory(memory_store, hashing_embedder)


def test_add_counts_duplicates_and_stores_once(episodic: EpisodicMemory) -> None:
    items = [_interaction("u", f"question {n}", days=n) for n in range(3)]
    assert (r := episodic.add(items)).added == 3 and r.duplicates == 0
    again = episodic.add([*items, items[0]])
    assert (again.added, again.duplicates) == (0, 4)
    assert episodic.count("u") == 3


def test_memory_round_trips_through_the_store(episodic: EpisodicMemory) -> None:
    original = _interaction("u", "which film tonight?", "[2]", days=1, source="lamp", rank=3, ok=True, none=None)
    episodic.add([original])
    [memory] = episodic.search("u", "which film", k=1)
    assert isinstance(memory, Memory)
    assert memory.interaction == original
    assert memory.memory_id == original.interaction_id
    assert memory.score is not None and memory.score > 0.5
    assert memory.superseded_by is None


def test_search_ranks_similar_queries_first_and_is_per_user(episodic: EpisodicMemory) -> None:
    episodic.add(
        [
            _interaction("a", "recommend a jazz album"),
            _interaction("a", "how do I bake bread"),
            _interaction("b", "recommend a jazz album"),
        ]
    )
    hits = episodic.search("a", "recommend jazz music", k=2)
    assert hits[0].interaction.query == "recommend a jazz album"
    assert all(m.user_id == "a" for m in hits)
    assert episodic.search("nobody", "jazz") == []
    assert episodic.user_ids() == ["a", "b"]


def test_supersede_keeps_history(episodic: EpisodicMemory) -> None:
    old = _interaction("u", "my favourite colour", "blue", days=1)
    episodic.add([old])
    new = episodic.supersede("u", old.interaction_id, _interaction("u", "my favourite colour", "green", days=2))
    assert [m.interaction.response for m in episodic.search("u", "favourite colour")] == ["green"]
    history = episodic.history("u")
    assert [(m.interaction.response, m.superseded_by) for m in history] == [("blue", new.memory_id), ("green", None)]
    assert [m.interaction.response for m in episodic.history("u", include_superseded=False)] == ["green"]
    # Re-ingesting the old interaction does not resurrect it.
    assert episodic.add([old]).duplicates == 1
    assert episodic.get("u", old.interaction_id).superseded_by == new.memory_id
    with pytest.raises(UnknownUser):
        episodic.supersede("u", "no-such-id", _interaction("u", "x"))
    with pytest.raises(ValueError, match="belongs to"):
        episodic.supersede("u", old.interaction_id, _interaction("v", "x"))


def test_history_and_latest_order(episodic: EpisodicMemory) -> None:
    naive = Interaction(user_id="u", query="naive stamp", response="r", timestamp=datetime(2024, 1, 3))
    episodic.add(
        [_interaction("u", "day 5", days=5), _interaction("u", "undated"), naive, _interaction("u", "day 1", days=1)]
    )
    assert [m.interaction.query for m in episodic.history("u")] == ["undated", "day 1", "naive stamp", "day 5"]
    assert [m.interaction.query for m in episodic.latest("u", 2)] == ["naive stamp", "day 5"]
    assert episodic.latest("u", 0) == []
    assert episodic.history("nobody") == []


def test_require_user(episodic: EpisodicMemory) -> None:
    with pytest.raises(UnknownUser, match="personaagent ingest") as excinfo:
        episodic.require_user("ghost")
    assert "'ghost'" in str(excinfo.value)
    episodic.add([_interaction("ghost", "boo")])
    episodic.require_user("ghost")


@pytest.mark.parametrize("user_id", ["*", "x" * 256, "ユーザー🙂"])
def test_odd_user_ids(episodic: EpisodicMemory, user_id: str) -> None:
    episodic.add([_interaction(user_id, "own question"), _interaction("other", "own question")])
    [hit] = episodic.search(user_id, "own question", k=5)
    assert hit.user_id == user_id


@pytest.mark.parametrize("bad", ["", "  ", "x" * 257])
def test_invalid_user_ids_fail_validation(bad: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        _interaction(bad, "q")


def test_embedder_must_match_store(memory_store: MemoryStore) -> None:
    with pytest.raises(EmbeddingMismatch):
        EpisodicMemory(memory_store, HashingEmbedder(32))


def test_episodic_on_qdrant_client_local(hashing_embedder: HashingEmbedder) -> None:
    with QdrantServerStore(":memory:", embedder_name=hashing_embedder.name, dim=hashing_embedder.dim) as store:
        memory = EpisodicMemory(store, hashing_embedder)
        old = _interaction("u", "q1", days=1)
        memory.add([old, _interaction("u", "q2", days=2)])
        memory.supersede("u", old.interaction_id, _interaction("u", "q1 again", days=3))
        assert [m.interaction.query for m in memory.latest("u", 5)] == ["q2", "q1 again"]
        assert store.count(EPISODIC, "u") == 3


def test_knowledge_base(memory_store: MemoryStore, hashing_embedder: HashingEmbedder) -> None:
    kb = KnowledgeBase(memory_store, hashing_embedder)
    report = kb.add_documents("u", ["sourdough bread needs a starter", ("recipe-2", "pasta with tomato sauce")])
    assert (report.added, report.duplicates) == (2, 0)
    assert kb.add_documents("u", ["sourdough bread needs a starter"]).duplicates == 1
    kb.add_documents("other", ["pasta with tomato sauce and basil"])
    [hit] = kb.search("u", "tomato pasta", k=1)
    assert (hit.doc_id, hit.text) == ("recipe-2", "pasta with tomato sauce")
    assert len(kb.search("u", "pasta", k=10)) == 2 == kb.count("u")
    assert kb.search("nobody", "pasta") == []
    # Knowledge and episodic memory do not mix.
    assert EpisodicMemory(memory_store, hashing_embedder).count("u") == 0
    with pytest.raises(ValueError, match="empty"):
        kb.add_documents("u", ["  "])
