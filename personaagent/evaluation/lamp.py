"""The reader for LaMP benchmark files.

:func:`read_lamp` turns LaMP-2N, LaMP-2M and LaMP-3 question/output files into
:class:`~personaagent.evaluation.tasks.TaskExample` s. In LaMP every question has its own profile,
so each question is its own user (``user_id`` = the question id).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from personaagent.errors import InvalidRecord
from personaagent.evaluation.tasks import TaskExample, TaskSpec
from personaagent.ingest import Skipped, read_user_text
from personaagent.records import Interaction, describe_validation_error

__all__ = [
    "LampVariant",
    "LAMP_VARIANTS",
    "LampData",
    "read_lamp",
]

logger = logging.getLogger(__name__)

LampVariant = Literal["LaMP-2N", "LaMP-2M", "LaMP-3"]
LAMP_VARIANTS: tuple[LampVariant, ...] = ("LaMP-2N", "LaMP-2M", "LaMP-3")

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
            skipped.append(Skipped(None, str(exc), element=index))
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
        spec = TaskSpec(name=variant, kind="label", labels=tuple(sorted(labels)),
                        description=_DESCRIPTIONS[variant])
    examples = [
        TaskExample(user_id=qid, query=text, gold=gold, profile=profile, spec=spec,
                    metadata={"input": raw_input}, example_id=qid)
        for qid, text, gold, profile, raw_input in parsed
    ]
    return LampData(spec=spec, examples=examples, skipped=skipped)


def _load_json(path: Path) -> Any:
    text = read_user_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
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
            raise ValueError(f"profile item {position}: {describe_validation_error(exc)}") from None
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
