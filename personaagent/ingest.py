"""Reading the files users give: the records behind ``personaagent ingest``.

:func:`read_user_text` is the one way a file a user gave (interactions, knowledge documents, LaMP
files) is decoded. :func:`read_interactions` reads JSON, JSON Lines or CSV interaction files:
malformed records are skipped and reported with their line number, never silently dropped, and
the valid records of the same file are kept.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from personaagent.errors import InvalidRecord
from personaagent.records import Interaction, describe_validation_error

__all__ = ["Skipped", "MAX_RECORD_CHARS", "read_user_text", "read_interactions", "interaction_from_record"]

logger = logging.getLogger(__name__)

#: A record longer than this (in characters) is skipped: no real interaction is that long, and
#: one would flood a prompt or the embedder.
MAX_RECORD_CHARS = 100_000


_UTF8_BOM = b"\xef\xbb\xbf"
# UTF-32 first: its little-endian mark starts with UTF-16's.
_OTHER_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_SAVE_AS_UTF8 = "save it as UTF-8 (a spreadsheet's \"CSV UTF-8\"; an editor's \"UTF-8\" encoding) and try again"


def read_user_text(path: Path) -> str:
    """The text of a file a user gave, decoded as UTF-8 (with or without a byte-order mark).

    A UTF-8 byte-order mark, which spreadsheets' "CSV UTF-8" export and Windows editors write, is
    dropped. Any other encoding is refused rather than guessed, so no text is silently changed.

    Raises:
        InvalidRecord: naming the file and the fix: it cannot be read, or it is UTF-16/UTF-32
            (by its byte-order mark, or NUL bytes without one), or it has bytes that are not
            UTF-8 (e.g. Latin-1 or Windows-1252 text; the message gives the line).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidRecord(f"{path}: {exc.strerror or exc}") from None
    for mark, encoding in _OTHER_BOMS:
        if data.startswith(mark):
            raise InvalidRecord(f"{path}: the file is {encoding} text, not UTF-8; {_SAVE_AS_UTF8}")
    data = data.removeprefix(_UTF8_BOM)
    # UTF-16 without a mark: every other byte of its first (ASCII) characters is NUL. A NUL
    # elsewhere is a legal character of UTF-8 text, kept as written.
    if len(data) >= 4 and ((data[1] == 0 and data[3] == 0) or (data[0] == 0 and data[2] == 0)):
        raise InvalidRecord(f"{path}: the file looks like UTF-16 text without a byte-order mark; {_SAVE_AS_UTF8}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidRecord(
            f"{path}: line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 (Latin-1 or Windows-1252 text?); "
            f"{_SAVE_AS_UTF8}"
        ) from None


@dataclass(frozen=True)
class Skipped:
    """A record that was not read, and why.

    Attributes:
        line: 1-based line where the record starts; None where lines are not tracked (LaMP files).
        reason: What is wrong with it.
        element: 1-based position of the record in a JSON list, for a file that is one (a list
            written on one line has every record on line 1). Defaults to None: the record is a
            line of JSON Lines or a CSV row.
    """

    line: int | None
    reason: str
    element: int | None = None

    def __str__(self) -> str:
        if self.element is None:
            where = f"line {self.line}"
        elif self.line is None:
            where = f"element {self.element}"
        else:
            where = f"element {self.element} (line {self.line})"
        return f"{where}: {self.reason}"


_REQUIRED = ("user_id", "query", "response")
_CORE = {"user_id", "query", "response", "timestamp", "metadata", "schema_version"}


def read_interactions(path: Path, *, default_user_id: str | None = None) -> tuple[list[Interaction], list[Skipped]]:
    """Read interactions from a ``.jsonl``/``.ndjson``, ``.json`` or ``.csv`` file.

    Each record needs ``user_id``, ``query`` and ``response`` and may have ``timestamp`` (ISO 8601
    or Unix seconds; naive times are taken as UTC). Any other field or column goes into
    ``metadata`` (values must be strings, numbers, booleans or null); a JSON ``metadata`` object
    is merged in too. A numeric ``response`` (a rating) is read as its text.

    A ``.json`` file is a list of records, or JSON Lines if it does not start with ``[``.

    Args:
        path: the file.
        default_user_id: the user of records that have no ``user_id`` (a CSV may then lack the
            column). Defaults to None: such records are skipped.

    Returns:
        The valid interactions in file order, and every skipped record with its line number (and,
        in a JSON list, its element number) and reason (bad JSON, missing field, wrong type,
        longer than :data:`MAX_RECORD_CHARS`). A file with no records gives two empty lists.

    Raises:
        InvalidRecord: The file cannot be read at all (missing, unknown extension, a JSON list
            that does not parse, a CSV without the required columns).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv"):
        raise InvalidRecord(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json or .csv")
    # Read as bytes: text mode would turn a "\r" inside a quoted CSV field into "\n"; the csv module
    # reads line ends itself (open(newline="")), and JSON files get universal newlines below.
    text = read_user_text(path)
    if suffix != ".csv":
        text = text.replace("\r\n", "\n").replace("\r", "\n")

    required = tuple(name for name in _REQUIRED if not (name == "user_id" and default_user_id is not None))
    if suffix == ".csv":
        records = _csv_records(text, path, required)
    elif suffix == ".json" and text.lstrip().startswith("["):
        records = _json_list_records(text, path)
    else:
        records = _jsonl_records(text)

    interactions: list[Interaction] = []
    skipped: list[Skipped] = []
    for line, element, record in records:
        if isinstance(record, Skipped):
            skipped.append(record)
            continue
        try:
            interactions.append(interaction_from_record(record, default_user_id=default_user_id))
        except ValueError as exc:
            skipped.append(Skipped(line, str(exc), element))
    if skipped:
        logger.warning("%s: skipped %d malformed records", path, len(skipped))
    return interactions, skipped


def _too_long(line: int, size: int, element: int | None = None) -> Skipped:
    return Skipped(line, f"record is {size} characters; the limit is {MAX_RECORD_CHARS}", element)


#: A record as a reader found it: its line, its element number in a JSON list (None elsewhere),
#: and the parsed record, or why it could not be parsed.
_FoundRecord = tuple[int, int | None, Any]


def _jsonl_records(text: str) -> Iterator[_FoundRecord]:
    # Split on "\n" only: str.splitlines() also breaks at U+2028, U+0085 and other characters that
    # are legal inside a JSON string, which cut valid records in two and shifted line numbers.
    for line_number, line in enumerate(text.split("\n"), start=1):
        # Files joined with `cat` carry each part's byte-order mark at the start of a line.
        line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        if len(line) > MAX_RECORD_CHARS:
            yield line_number, None, _too_long(line_number, len(line))
            continue
        try:
            yield line_number, None, json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_number, None, Skipped(line_number, f"invalid JSON: {exc.msg}")
        except RecursionError:
            yield line_number, None, Skipped(line_number, _TOO_DEEP)


_WHITESPACE = re.compile(r"\s*")
#: Python's JSON parser recurses once per nesting level; no interaction nests that deep.
_TOO_DEEP = "invalid JSON: nested too deeply (a record is an object of text fields)"


def _skip_whitespace(text: str, position: int) -> int:
    match = _WHITESPACE.match(text, position)  # r"\s*" always matches; None only to the type checker
    return match.end() if match else position


def _json_list_records(text: str, path: Path) -> Iterator[_FoundRecord]:
    # Decoded item by item so each record keeps its element number and the line it starts on.
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    for element in itertools.count(1):
        position = _skip_whitespace(text, position)
        if position < len(text) and text[position] == "]":
            break
        line = text.count("\n", 0, position) + 1
        try:
            item, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            # Past a syntax error nothing in a JSON list can be located reliably.
            raise InvalidRecord(
                f"{path}: element {element} (line {exc.lineno}, column {exc.colno}): invalid JSON: {exc.msg}"
            ) from None
        except RecursionError:
            raise InvalidRecord(f"{path}: element {element} (line {line}): {_TOO_DEEP}") from None
        size = end - position
        yield line, element, (_too_long(line, size, element) if size > MAX_RECORD_CHARS else item)
        position = _skip_whitespace(text, end)
        if position < len(text) and text[position] == ",":
            position += 1
        elif position >= len(text) or text[position] != "]":
            line = text.count("\n", 0, position) + 1
            raise InvalidRecord(f"{path}: after element {element} (line {line}): expected ',' or ']'")


def _csv_records(text: str, path: Path, required: tuple[str, ...]) -> Iterator[_FoundRecord]:
    # newline="" as the csv module asks: lines end at \n, \r or \r\n only, never at U+2028 & co.
    reader = csv.reader(io.StringIO(text, newline=""))
    limit = csv.field_size_limit()
    # A huge field must reach our length check instead of aborting the whole file.
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        try:
            header = next(reader)
        except StopIteration:
            return
        missing = [name for name in required if name not in header]
        if missing:
            raise InvalidRecord(f"{path}: line 1: CSV header lacks column(s) {', '.join(missing)}")
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            size = sum(len(cell) for cell in row)
            if size > MAX_RECORD_CHARS:
                yield line, None, _too_long(line, size)
            elif len(row) != len(header):
                yield line, None, Skipped(line, f"has {len(row)} fields; the header has {len(header)}")
            else:
                # An empty CSV cell is a missing value (e.g. no timestamp).
                yield line, None, {name: (cell if cell != "" else None) for name, cell in zip(header, row)}
    finally:
        csv.field_size_limit(limit)


def interaction_from_record(record: Any, *, default_user_id: str | None = None) -> Interaction:
    """One record of an interactions file (or of an API request) as an Interaction.

    The rules are :func:`read_interactions`' for one record: ``user_id``, ``query`` and
    ``response`` are required (``user_id`` may come from ``default_user_id``), a numeric
    response is read as its text, other fields become metadata.

    Raises:
        ValueError: The record is not an object, lacks a field, or has a field of the wrong type.
    """
    if default_user_id is not None and isinstance(record, dict) and record.get("user_id") in (None, ""):
        record = {**record, "user_id": default_user_id}
    return _to_interaction(record)


def _to_interaction(record: Any) -> Interaction:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    missing = [name for name in _REQUIRED if record.get(name) is None]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    response = record["response"]
    if isinstance(response, (int, float)) and not isinstance(response, bool):
        response = str(response)
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("'metadata' must be an object")
    metadata = {**metadata, **{k: v for k, v in record.items() if k not in _CORE}}
    for key, value in metadata.items():
        if not (value is None or isinstance(value, (str, int, float, bool))):
            raise ValueError(f"metadata value {key!r} must be a string, number, boolean or null")
    try:
        interaction = Interaction(
            user_id=record["user_id"],
            query=record["query"],
            response=response,
            timestamp=record.get("timestamp"),
            metadata=metadata,
        )
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from None
    return interaction
