"""Crash-safe file writes shared by the persona book, semantic memory and run manifests.

A reader sees either the old file or the new one, never a torn write: content goes to a
temporary file in the same folder, is fsynced, then renamed over (or hard-linked to) the target.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from personaagent.errors import UnreadableFile
from personaagent.records import error_message

__all__ = [
    "user_dirname",
    "write_atomic",
    "write_bytes_atomic",
    "write_new",
    "append_line",
    "read_model",
    "unreadable_reason",
]

_Model = TypeVar("_Model", bound=BaseModel)
_MAX_REASON_CHARS = 200

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


def unreadable_reason(exc: BaseException, data: bytes | None = None) -> str:
    """A short one-line reason why a stored record could not be read, for an error message.

    Knows the failures of reading a pydantic record from a file: OSError, UnicodeDecodeError (pass
    the raw ``data`` to name the bad byte) and pydantic's ValidationError (invalid JSON, or the first
    field that is wrong, ``field text: Field required``).
    """
    if isinstance(exc, UnicodeDecodeError):
        byte = f"byte 0x{data[exc.start]:02x} " if data is not None and exc.start < len(data) else ""
        reason = f"not UTF-8 ({byte}at offset {exc.start})"
    elif isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
    elif isinstance(exc, ValidationError):
        problems = exc.errors(include_url=False)
        if not problems:
            reason = f"not a valid {exc.title}"
        else:
            first = problems[0]
            if first["type"] == "json_invalid":
                detail = (first.get("ctx") or {}).get("error", "")
                reason = f"invalid JSON ({detail})" if detail else "invalid JSON"
            else:
                where = ".".join(str(part) for part in first["loc"])
                reason = f"field {where}: {error_message(first)}" if where else error_message(first)
            if len(problems) > 1:
                reason += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    else:
        reason = str(exc) or type(exc).__name__
    reason = " ".join(reason.split())  # one line, whatever a validator's message held
    return reason if len(reason) <= _MAX_REASON_CHARS else reason[: _MAX_REASON_CHARS - 3] + "..."


def read_model(path: Path, model: type[_Model], what: str) -> _Model:
    """Read a ``model`` record stored as JSON at ``path``.

    Args:
        what: what the file holds, for the message ("persona", "profile", "job").

    Raises:
        UnreadableFile: the file cannot be read, is not UTF-8, not JSON or not a valid record; the
            message is one line and the file is left untouched. (A missing file raises it too:
            callers that allow one check first.)
    """
    data: bytes | None = None
    try:
        data = path.read_bytes()
        return model.model_validate_json(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValidationError) as exc:
        raise UnreadableFile.of(what, path, unreadable_reason(exc, data)) from None
