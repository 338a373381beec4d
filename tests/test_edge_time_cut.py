"""Issue 11, kind 3: a time cut applied after the top-k search. The cut (and the hidden ids) are
part of the store query on both backends, so a search returns min(k, visible) memories however
many newer ones resemble the query."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from personaagent.actions import MEMORY_SEARCH, builtin_tools, search_memories
from personaagent.memory import EdgeStore, EpisodicMemory, KnowledgeBase, MemoryStore, QdrantServerStore
from personaagent.records import Interaction
from personaagent.runtime.embedder import HashingEmbedder

DAY0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(params=["edge", "qdrant-client-local"])
def episodic(request: pytest.FixtureRequest, hashing_embedder: HashingEmbedder) -> Iterator[EpisodicMemory]:
    store: MemoryStore = (
        EdgeStore(":memory:", embedder_name=hashing_embedder.name, dim=hashing_embedder.dim)
        if request.param == "edge"
        else QdrantServerStore(":memory:", embedder_name=hashing_embedder.name, dim=hashing_embedder.dim)
    )
    yield EpisodicMemory(store, hashing_embedder)
    store.close()


def add(episodic: EpisodicMemory, query: str, day: int | None, response: str = "r") -> Interaction:
    interaction = Interaction(
        user_id="u1", query=query, response=response, timestamp=None if day is None else DAY0 + timedelta(days=day)
    )
    episodic.add([interaction])
    return interaction


def the_issue_history(episodic: EpisodicMemory) -> None:
    for i in range(3):
        add(episodic, f"Garden notes about tomatoes {i}", day=i)
    for i in range(30):
        add(episodic, f"Cup final match report goal {i}", day=100 + i)


def test_the_issue_case_three_visible_memories_are_returned(episodic):
    the_issue_history(episodic)
    found = search_memories(episodic, "u1", "Cup final match report", k=5, before=DAY0 + timedelta(days=50))
    assert sorted(m.interaction.query for m in found) == [f"Garden notes about tomatoes {i}" for i in range(3)]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_a_search_returns_min_k_visible(episodic, k):
    the_issue_history(episodic)
    found = episodic.search("u1", "Cup final match report", k=k, before=DAY0 + timedelta(days=50))
    assert len(found) == min(k, 3)
    assert all(m.interaction.timestamp < DAY0 + timedelta(days=50) for m in found)


def test_the_cut_is_strict_and_undated_memories_stay_visible(episodic):
    add(episodic, "match report on the day", day=10)
    add(episodic, "match report the day before", day=9)
    add(episodic, "match report undated", day=None)
    found = episodic.search("u1", "match report", k=10, before=DAY0 + timedelta(days=10))
    assert sorted(m.interaction.query for m in found) == ["match report the day before", "match report undated"]


def test_a_cut_with_another_offset_compares_as_the_same_instant(episodic):
    add(episodic, "match report day 2", day=2)
    # 2024-01-03 01:00 at +02:00 is 2024-01-02 23:00 UTC: day 2 (2024-01-03 00:00 UTC) is after it.
    found = episodic.search("u1", "match report", k=5, before=datetime(2024, 1, 3, 1, tzinfo=timezone(timedelta(hours=2))))
    assert found == []
    naive = episodic.search("u1", "match report", k=5, before=datetime(2024, 1, 3, 0, 0, 1))  # naive: UTC
    assert [m.interaction.query for m in naive] == ["match report day 2"]


def test_hidden_ids_are_part_of_the_query_too(episodic):
    # Many hidden near-duplicates must not crowd out the visible memories.
    hidden = [add(episodic, f"Cup final match report goal {i}", day=i).interaction_id for i in range(20)]
    add(episodic, "Garden notes about tomatoes", day=30)
    add(episodic, "Garden notes about roses", day=31)
    found = search_memories(episodic, "u1", "Cup final match report", k=2, exclude_ids=hidden)
    assert sorted(m.interaction.query for m in found) == ["Garden notes about roses", "Garden notes about tomatoes"]


def test_superseded_memories_stay_hidden_under_a_cut(episodic):
    old = add(episodic, "match report old", day=1)
    episodic.supersede("u1", old.interaction_id, Interaction(user_id="u1", query="match report fixed", response="r",
                                                             timestamp=DAY0 + timedelta(days=2)))
    found = episodic.search("u1", "match report", k=5, before=DAY0 + timedelta(days=5))
    assert [m.interaction.query for m in found] == ["match report fixed"]


def test_the_memory_search_tool_gets_the_same_cut(episodic, hashing_embedder):
    the_issue_history(episodic)
    knowledge = KnowledgeBase(episodic.store, hashing_embedder)
    tools = builtin_tools("u1", episodic=episodic, knowledge=knowledge, k=5, before=DAY0 + timedelta(days=50))
    observation = next(t for t in tools if t.name == MEMORY_SEARCH)(query="Cup final match report")
    assert observation.count("Garden notes about tomatoes") == 3 and "Cup final" not in observation
