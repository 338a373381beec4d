"""The offline runtime: the embedded local LM for DSPy, embedders, and LM usage metering."""

from personaagent.runtime.embedder import (
    Embedder,
    FastEmbedEmbedder,
    HashingEmbedder,
    LocalMiniLMEmbedder,
    build_embedder,
)
from personaagent.runtime.local_lm import LOCAL_MODEL_NAME, LlamaCppEngine, adapter_for, build_lm, packaged_model_path

__all__ = [
    "Embedder",
    "FastEmbedEmbedder",
    "HashingEmbedder",
    "LocalMiniLMEmbedder",
    "build_embedder",
    "LOCAL_MODEL_NAME",
    "LlamaCppEngine",
    "adapter_for",
    "build_lm",
    "packaged_model_path",
]
