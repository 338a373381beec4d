"""The offline runtime: the embedded local LM for DSPy, embedders, and LM usage metering."""

from personaagent.runtime.embedder import (
    Embedder,
    FastEmbedEmbedder,
    HashingEmbedder,
    LocalMiniLMEmbedder,
    build_embedder,
)
from personaagent.runtime.local_lm import LlamaCppEngine, adapter_for, best_cpu_backend, build_lm, load_cpu_backend
from personaagent.runtime.models import LOCAL_MODELS, PackagedModel, resolve_model

__all__ = [
    "Embedder",
    "FastEmbedEmbedder",
    "HashingEmbedder",
    "LocalMiniLMEmbedder",
    "build_embedder",
    "LOCAL_MODELS",
    "LlamaCppEngine",
    "PackagedModel",
    "adapter_for",
    "best_cpu_backend",
    "build_lm",
    "load_cpu_backend",
    "resolve_model",
]
