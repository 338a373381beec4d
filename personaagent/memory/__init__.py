"""Memory: the per-user vector store, episodic memory of interactions, and the knowledge base."""

from personaagent.memory.episodic import AddReport, EpisodicMemory, UserMemory
from personaagent.memory.knowledge import KnowledgeBase, KnowledgeHit
from personaagent.memory.semantic import SemanticMemory
from personaagent.memory.store import (
    EPISODIC,
    KNOWLEDGE,
    NAMESPACES,
    EdgeStore,
    Hit,
    MemoryStore,
    QdrantServerStore,
    StoredItem,
    open_store,
)

__all__ = [
    "AddReport",
    "EpisodicMemory",
    "UserMemory",
    "KnowledgeBase",
    "KnowledgeHit",
    "SemanticMemory",
    "EPISODIC",
    "KNOWLEDGE",
    "NAMESPACES",
    "EdgeStore",
    "Hit",
    "MemoryStore",
    "QdrantServerStore",
    "StoredItem",
    "open_store",
]
