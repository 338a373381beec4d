"""One place that opens, once per process, what every user's agent shares.

A Workspace holds the settings and lazily builds the LM, the embedder, the memory store, the
persona book and the profile store from them. Agents, the optimizer, the evaluation runner and
the CLI all take a Workspace, so the Python API and the CLI run the same objects.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Literal

import dspy

from personaagent import telemetry
from personaagent.config import Settings, load_settings
from personaagent.memory import EpisodicMemory, KnowledgeBase, SemanticMemory, open_store
from personaagent.persona import PersonaBook
from personaagent.runtime import LOCAL_MODELS, Embedder, adapter_for, build_embedder, build_lm

__all__ = ["Workspace"]

logger = logging.getLogger(__name__)

_default_lock = threading.Lock()
_default: Workspace | None = None


class Workspace:
    """Shared resources built from Settings, each opened on first use.

    Args:
        settings: defaults to ``load_settings()`` (environment and config file).
        lm: a ``dspy.LM`` (or ``dspy.utils.DummyLM``) to use instead of ``settings.lm``.
        embedder: an Embedder to use instead of ``settings.embedder``.

    Examples:
        >>> ws = Workspace(Settings(store=":memory:"))  # doctest: +SKIP
        >>> agent = PersonaAgent("u1", workspace=ws)  # doctest: +SKIP
    """

    def __init__(self, settings: Settings | None = None, *, lm: Any = None, embedder: Embedder | None = None) -> None:
        self.settings = settings if settings is not None else load_settings()
        self._lm = lm
        self._embedder = embedder
        self._owns_store = True

    @classmethod
    def default(cls) -> Workspace:
        """The process-wide workspace built from the environment (used when none is passed)."""
        global _default
        with _default_lock:
            if _default is None:
                _default = cls()
            return _default

    def with_home(self, home: Path) -> Workspace:
        """A workspace with its own files (personas, profiles, traces) under ``home`` that shares
        this one's LM, embedder and memory store (used to run several methods side by side)."""
        sibling = Workspace(self.settings.model_copy(update={"home": Path(home)}), lm=self.lm, embedder=self.embedder)
        sibling.__dict__["store"] = self.store
        sibling._owns_store = False  # closing the sibling must leave the shared store open
        return sibling

    def __deepcopy__(self, memo: dict) -> Workspace:
        # Programs are deep-copied by optimizers; the store, model and files they point at are
        # shared resources, never copied.
        return self

    @cached_property
    def lm(self) -> Any:
        return self._lm if self._lm is not None else build_lm(self.settings)

    @contextmanager
    def lm_context(self) -> Iterator[None]:
        """Run DSPy calls on this workspace's LM (and the adapter the local LM needs)."""
        with dspy.context(**self.lm_settings()):
            yield

    @property
    def memories_as(self) -> Literal["context", "demos"]:
        """How the answer predictor gets retrieved memories on this workspace's model: ``"demos"``
        for a packaged model measured to need them as few-shot turns, else ``"context"``."""
        name = getattr(getattr(self.lm, "engine", None), "model_name", None)
        return LOCAL_MODELS[name].memories_as if name in LOCAL_MODELS else "context"

    def lm_settings(self) -> dict[str, Any]:
        """The LM and the adapter it needs (JSON for the embedded model), as dspy.context keywords."""
        settings = {"lm": self.lm, "adapter": adapter_for(self.settings, self.lm)}
        if telemetry.lm_callbacks():  # tracing on: a span per LM call
            settings["callbacks"] = [*dspy.settings.get("callbacks", []), *telemetry.lm_callbacks()]
        return settings

    @cached_property
    def embedder(self) -> Embedder:
        return self._embedder if self._embedder is not None else build_embedder(self.settings)

    @cached_property
    def store(self):
        return open_store(
            self.settings.store_location,
            embedder_name=self.embedder.name,
            dim=self.embedder.dim,
            api_key=self.settings.qdrant_api_key.get_secret_value() if self.settings.qdrant_api_key else None,
        )

    @cached_property
    def episodic(self) -> EpisodicMemory:
        return EpisodicMemory(self.store, self.embedder)

    @cached_property
    def knowledge(self) -> KnowledgeBase:
        return KnowledgeBase(self.store, self.embedder)

    @cached_property
    def semantic(self) -> SemanticMemory:
        return SemanticMemory(self.settings.profiles_dir)

    @cached_property
    def personas(self) -> PersonaBook:
        return PersonaBook(self.settings.personas_dir)

    def close(self) -> None:
        """Release the store (and its folder lock)."""
        if "store" in self.__dict__:
            if self._owns_store:
                self.store.close()
            del self.__dict__["store"]
            self.__dict__.pop("episodic", None)
            self.__dict__.pop("knowledge", None)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
