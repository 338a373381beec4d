"""Readers for LaMP benchmark files and for user-supplied interaction files.

:func:`read_lamp` turns LaMP-2N, LaMP-2M and LaMP-3 question/output files into
:class:`~personaagent.evaluation.tasks.TaskExample` s. In LaMP every question has its own profile,
so each question is its own user (``user_id`` = the question id).

:func:`read_interactions` reads JSON, JSON Lines or CSV interaction files, as the CLI's ``ingest``
command does: malformed records are skipped and reported with their line number, never silently
dropped, and the valid records of the same file are kept.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from personaagent.errors import InvalidRecord
from personaagent.evaluation.tasks import TaskExample, TaskSpec
from personaagent.records import Interaction

__all__ = [
    "LampVariant",
    "LAMP_VARIANTS",
    "LampData",
    "Skipped",
    "MAX_RECORD_CHARS",
    "read_lamp",
    "read_interactions",
    "interaction_from_record",
]

logger = logging.getLogger(__name__)

LampVariant = Literal["LaMP-2N", "LaMP-2M", "LaMP-3"]
LAMP_VARIANTS: tuple[LampVariant, ...] = ("LaMP-2N", "LaMP-2M", "LaMP-3")

#: A record longer than this (in characters) is skipped: no real interaction is that long, and
#: one would flood a prompt or the embedder.
MAX_RECORD_CHARS = 100_000


@dataclass(frozen=True)
class Skipped:
    """A record that was not read, and why.

    Attributes:
        line: 1-based line where the record starts (for LaMP files, the 1-based question number).
        reason: What is wrong with it.
    """

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class LampData:
    """Examples read from a LaMP question file, and the questions that were skipped."""

    spec: TaskSpec
    examples: list[TaskExample]
    skipped: list[Skipped]


@dataclass(frozen=True)
class _Layout:
    text_key: str  # profile field holding the item's text
    label_key: str  # profile field holding the user's response
    marker: str  # the word before the item's text in the question's input
    labels_word: str | None  # the word before the label list in the input


_LAYOUTS: dict[LampVariant, _Layout] = {
    "LaMP-2N": _Layout("text", "category", "article", "categories"),
    "LaMP-2M": _Layout("description", "tag", "description", "tags"),
    "LaMP-3": _Layout("text", "score", "review", None),
}
_DESCRIPTIONS: dict[LampVariant, str] = {
    "LaMP-2N": "the category of the news article",
    "LaMP-2M": "the tag of the movie",
    "LaMP-3": "the score (1 to 5) of the review",
}


def read_lamp(
    questions_path: Path,
    outputs_path: Path,
    *,
    variant: LampVariant | None = None,
    strict: bool = True,
) -> LampData:
    """Read a LaMP questions file and its outputs (golds) file.

    Args:
        questions_path: JSON list of ``{"id", "input", "profile": [...]}``.
        outputs_path: JSON ``{"task", "golds": [{"id", "output"}]}``.
        variant: ``"LaMP-2N"``, ``"LaMP-2M"`` or ``"LaMP-3"``; detected from the profile fields
            (``category``, ``tag``, ``score``) when ``None``.
        strict: Raise on the first malformed question; otherwise skip it and report it in
            ``LampData.skipped``.

    Returns:
        The task spec (labels parsed from the questions' inputs where they list them), the
        examples in file order, and the skipped questions.

    Raises:
        InvalidRecord: A file is unreadable or not in LaMP's shape, or (when ``strict``) a
            question is malformed; the message names the file and the question number.
    """
    questions = _load_json(questions_path)
    outputs = _load_json(outputs_path)
    if not isinstance(questions, list):
        raise InvalidRecord(f"{questions_path}: expected a JSON list of questions")
    if not isinstance(outputs, dict) or not isinstance(outputs.get("golds"), list):
        raise InvalidRecord(f"{outputs_path}: expected a JSON object with a 'golds' list")
    golds: dict[str, str] = {}
    for index, gold in enumerate(outputs["golds"], start=1):
        if not isinstance(gold, dict) or "id" not in gold or "output" not in gold:
            raise InvalidRecord(f"{outputs_path}: gold {index}: needs 'id' and 'output'")
        golds[str(gold["id"])] = str(gold["output"]).strip()
    variant = variant or _detect_variant(questions, questions_path)
    layout = _LAYOUTS[variant]

    parsed: list[tuple[str, str, str, tuple[Interaction, ...], str]] = []
    skipped: list[Skipped] = []
    labels: set[str] = set()
    for index, question in enumerate(questions, start=1):
        try:
            qid, text, gold, profile, listed = _parse_question(question, layout, golds)
        except ValueError as exc:
            if strict:
                raise InvalidRecord(f"{questions_path}: question {index}: {exc}") from None
            skipped.append(Skipped(index, str(exc)))
            continue
        labels.update(listed)
        parsed.append((qid, text, gold, profile, question["input"]))
    if skipped:
        logger.warning("%s: skipped %d of %d questions", questions_path, len(skipped), len(questions))

    if variant == "LaMP-3":
        spec = TaskSpec(name=variant, kind="rating", rating_range=(1.0, 5.0), description=_DESCRIPTIONS[variant])
    else:
        if not labels:
            # No input listed its labels: fall back to every label seen in golds and profiles.
            labels = {gold for _, _, gold, _, _ in parsed} | {i.response for p in parsed for i in p[3]}
        spec = TaskSpec(name=variant, kind="classification", labels=tuple(sorted(labels)),
                        description=_DESCRIPTIONS[variant])
    examples = [
        TaskExample(user_id=qid, query=text, gold=gold, profile=profile, spec=spec,
                    metadata={"input": raw_input}, example_id=qid)
        for qid, text, gold, profile, raw_input in parsed
    ]
    return LampData(spec=spec, examples=examples, skipped=skipped)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidRecord(f"{path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRecord(f"{path}: not valid JSON: {exc}") from None


def _detect_variant(questions: list, path: Path) -> LampVariant:
    for question in questions:
        items = question.get("profile") if isinstance(question, dict) else None
        for item in items if isinstance(items, list) else ():
            for variant, layout in _LAYOUTS.items():
                if isinstance(item, dict) and layout.label_key in item:
                    return variant
    raise InvalidRecord(f"{path}: cannot tell the LaMP task from the profiles; pass variant=")


def _parse_question(
    question: Any, layout: _Layout, golds: dict[str, str]
) -> tuple[str, str, str, tuple[Interaction, ...], tuple[str, ...]]:
    if not isinstance(question, dict):
        raise ValueError("a question must be a JSON object")
    for key in ("id", "input", "profile"):
        if key not in question:
            raise ValueError(f"missing field {key!r}")
    qid, raw_input, items = str(question["id"]), question["input"], question["profile"]
    if not isinstance(raw_input, str) or not raw_input.strip():
        raise ValueError("'input' must be a non-empty string")
    if not isinstance(items, list):
        raise ValueError("'profile' must be a list")
    if qid not in golds:
        raise ValueError(f"no gold output for id {qid!r}")
    profile = []
    for position, item in enumerate(items, start=1):
        if not isinstance(item, dict) or layout.text_key not in item or layout.label_key not in item:
            raise ValueError(f"profile item {position} needs {layout.text_key!r} and {layout.label_key!r}")
        metadata: dict[str, str | int | float | bool | None] = {"profile_id": str(item.get("id", position))}
        if isinstance(item.get("title"), str):
            metadata["title"] = item["title"]
        try:
            profile.append(
                Interaction(
                    user_id=qid,
                    query=str(item[layout.text_key]),
                    response=str(item[layout.label_key]).strip(),
                    timestamp=item.get("date"),
                    metadata=metadata,
                )
            )
        except ValidationError as exc:
            raise ValueError(f"profile item {position}: {_first_error(exc)}") from None
    return qid, _item_text(raw_input, layout.marker), golds[qid], tuple(profile), _listed_labels(
        raw_input, layout.labels_word
    )


def _item_text(raw_input: str, marker: str) -> str:
    # LaMP inputs are "<instruction> ... <marker>: <text>"; the text alone matches the profile items.
    match = re.search(rf"\b{marker}:\s*", raw_input, flags=re.IGNORECASE)
    text = raw_input[match.end():].strip() if match else ""
    return text or raw_input.strip()


def _listed_labels(raw_input: str, word: str | None) -> tuple[str, ...]:
    if word is None:
        return ()
    match = re.search(rf"\b{word}:\s*\[([^\]]*)\]", raw_input, flags=re.IGNORECASE)
    if match is None:
        return ()
    return tuple(label.strip() for label in match.group(1).split(",") if label.strip())


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


# --- User-supplied interaction files -----------------------------------------------------------

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
        The valid interactions in file order, and every skipped record with its line number and
        reason (bad JSON, missing field, wrong type, longer than :data:`MAX_RECORD_CHARS`).

    Raises:
        InvalidRecord: The file cannot be read at all (missing, unknown extension, a JSON list
            that does not parse, a CSV without the required columns).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv"):
        raise InvalidRecord(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json or .csv")
    try:
        # Text mode would turn a "\r" inside a quoted CSV field into "\n"; the csv module reads
        # line ends itself (open(newline="")), and JSON files get universal newlines below.
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InvalidRecord(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidRecord(f"{path}: not UTF-8 text: {exc}") from None
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
    for line, record in records:
        if isinstance(record, Skipped):
            skipped.append(record)
            continue
        try:
            interactions.append(interaction_from_record(record, default_user_id=default_user_id))
        except ValueError as exc:
            skipped.append(Skipped(line, str(exc)))
    if skipped:
        logger.warning("%s: skipped %d malformed records", path, len(skipped))
    return interactions, skipped


def _too_long(line: int, size: int) -> Skipped:
    return Skipped(line, f"record is {size} characters; the limit is {MAX_RECORD_CHARS}")


def _jsonl_records(text: str) -> Iterator[tuple[int, dict | Skipped]]:
    # Split on "\n" only: str.splitlines() also breaks at U+2028, U+0085 and other characters that
    # are legal inside a JSON string, which cut valid records in two and shifted line numbers.
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_RECORD_CHARS:
            yield line_number, _too_long(line_number, len(line))
            continue
        try:
            yield line_number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_number, Skipped(line_number, f"invalid JSON: {exc.msg}")


_WHITESPACE = re.compile(r"\s*")


def _skip_whitespace(text: str, position: int) -> int:
    match = _WHITESPACE.match(text, position)  # r"\s*" always matches; None only to the type checker
    return match.end() if match else position


def _json_list_records(text: str, path: Path) -> Iterator[tuple[int, dict | Skipped]]:
    # Decoded item by item so each record keeps the line it starts on.
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    while True:
        position = _skip_whitespace(text, position)
        if position < len(text) and text[position] == "]":
            break
        line = text.count("\n", 0, position) + 1
        try:
            item, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            # Past a syntax error nothing in a JSON list can be located reliably.
            raise InvalidRecord(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
        yield line, (_too_long(line, end - position) if end - position > MAX_RECORD_CHARS else item)
        position = _skip_whitespace(text, end)
        if position < len(text) and text[position] == ",":
            position += 1
        elif position >= len(text) or text[position] != "]":
            raise InvalidRecord(f"{path}: line {text.count(chr(10), 0, position) + 1}: expected ',' or ']'")


def _csv_records(text: str, path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict | Skipped]]:
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
                yield line, _too_long(line, size)
            elif len(row) != len(header):
                yield line, Skipped(line, f"has {len(row)} fields; the header has {len(header)}")
            else:
                # An empty CSV cell is a missing value (e.g. no timestamp).
                yield line, {name: (cell if cell != "" else None) for name, cell in zip(header, row)}
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
        raise ValueError(_first_error(exc)) from None
    if interaction.timestamp is not None and interaction.timestamp.tzinfo is None:
        interaction = interaction.model_copy(update={"timestamp": interaction.timestamp.replace(tzinfo=timezone.utc)})
    return interaction
