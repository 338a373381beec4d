"""Crash-safe file writes shared by the persona book, semantic memory and run manifests.

A reader sees either the old file or the new one, never a torn write: content goes to a
temporary file in the same folder, is fsynced, then renamed over (or hard-linked to) the target.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel

__all__ = ["user_dirname", "write_atomic", "write_bytes_atomic", "write_new", "append_line"]

def user_dirname(user_id: str) -> str:
    """A folder name for a user id that is safe on every filesystem.

    User ids may be ``"*"``, ``"../x"`` or 256 unicode characters, so the name is a hash; the
    records inside keep the real id.
    """
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:32]


def _temp_with(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_atomic(path: Path, record: BaseModel) -> None:
    """Write ``record`` as JSON to ``path``, replacing any previous file atomically."""
    write_bytes_atomic(path, record.model_dump_json(indent=2).encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, replacing any previous file atomically."""
    os.replace(_temp_with(path, data), path)


def write_new(path: Path, record: BaseModel) -> bool:
    """Write ``record`` to ``path`` only if no file is there yet, atomically.

    Returns:
        False if another writer created ``path`` first (the caller picks a new name).
    """
    tmp = _temp_with(path, record.model_dump_json(indent=2).encode("utf-8"))
    try:
        os.link(tmp, path)  # link() fails if path exists: an atomic create-if-absent
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def append_line(path: Path, record: BaseModel) -> None:
    """Append one JSON line; a crash can at worst leave a last partial line, which readers skip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (record.model_dump_json() + "\n").encode("utf-8")
    with open(path, "a+b") as handle:
        # A torn last line (a kill mid-append) has no newline: end it first, or this record would
        # be glued onto the fragment and be unreadable too (a manifest would redo the user forever).
        if handle.seek(0, os.SEEK_END) and (handle.seek(-1, os.SEEK_END), handle.read(1))[1] != b"\n":
            line = b"\n" + line
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
