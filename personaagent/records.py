"""Records that cross a boundary: to disk, to the store, to the CLI, or between users' runs.

Every record is a pydantic model with ``extra="forbid"`` (a misspelled field fails loudly) and a
``schema_version`` so files written today can be migrated tomorrow. Internal, short-lived values
stay plain dataclasses next to the code that uses them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Annotated, Any, Literal, Union, overload

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from personaagent.errors import InvalidRecord

__all__ = [
    "SCHEMA_VERSION",
    "MAX_USER_ID_CHARS",
    "UserId",
    "Record",
    "Interaction",
    "Memory",
    "Profile",
    "Persona",
    "PersonaProvenance",
    "AnswerFormat",
    "ToolCall",
    "LMUsage",
    "TraceEvent",
    "CompileStarted",
    "Simulated",
    "Critiqued",
    "Aggregated",
    "Edited",
    "Gated",
    "StepSkipped",
    "CompileFinished",
    "PersonaCommitted",
    "CompileStatus",
    "UserCompileStatus",
    "SimulationPhase",
    "UserCompileRecord",
    "EvalResult",
    "utc_now",
    "as_aware",
    "EARLIEST",
    "validate_user_id",
    "describe_validation_error",
    "error_message",
    "match_label",
]

SCHEMA_VERSION = 1
MAX_USER_ID_CHARS = 256

MetadataValue = Union[str, int, float, bool, None]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


_DATETIME = TypeAdapter(datetime)

#: Sorts before every aware time: where undated records go in a chronological order.
EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


@overload
def as_aware(moment: None) -> None: ...


@overload
def as_aware(moment: datetime | date | str | float) -> datetime: ...


def as_aware(moment: datetime | date | str | float | None) -> datetime | None:
    """A point in time as a timezone-aware datetime, so it compares with every other one.

    The one place naive times are read as UTC: every public entry point that takes a time
    (records, ``before=`` cuts, alignment examples, evaluation examples) passes it through here.
    An aware time is returned unchanged (its offset is part of the user's data).

    Args:
        moment: a datetime (naive is UTC), a date (midnight UTC), an ISO 8601 string or Unix
            seconds; None stays None.

    Raises:
        InvalidRecord: ``moment`` is not a time.
    """
    if moment is None:
        return None
    if isinstance(moment, date) and not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    elif not isinstance(moment, datetime):
        try:
            moment = _DATETIME.validate_python(moment)
        except ValidationError:
            raise InvalidRecord(
                f"{moment!r} is not a time (use a datetime, an ISO 8601 string or Unix seconds)"
            ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def validate_user_id(user_id: str) -> str:
    """A user id is any non-empty string up to MAX_USER_ID_CHARS with no control characters.

    Ids are matched exactly (never as patterns), so ``"*"`` is just a user called ``*``.

    Raises:
        InvalidRecord: (a ValueError) naming what is wrong with the id.
    """
    if not isinstance(user_id, str):
        raise InvalidRecord(f"user id must be a string, got {type(user_id).__name__}")
    if not user_id.strip():
        raise InvalidRecord("user id must not be empty")
    if len(user_id) > MAX_USER_ID_CHARS:
        raise InvalidRecord(f"user id is {len(user_id)} characters; the limit is {MAX_USER_ID_CHARS}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in user_id):
        raise InvalidRecord("user id must not contain control characters")
    return user_id


UserId = Annotated[str, AfterValidator(validate_user_id)]


def error_message(error: Mapping[str, Any]) -> str:
    """One error of ``ValidationError.errors()`` as the problem it states: a validator's own
    sentence, without pydantic's "Value error, " before it, else pydantic's message."""
    raised = error.get("ctx", {}).get("error") if error.get("type") == "value_error" else None
    return str(raised) if raised is not None else str(error["msg"])


def describe_validation_error(exc: ValidationError) -> str:
    """A pydantic error as one line: ``field: problem; field: problem``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'record'}: {error_message(err)}" for err in exc.errors()
    )


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION


class Interaction(Record):
    """One thing a user asked and the response that was right for them (the "true response").

    For a classification task the response is the label; for ratings, the rating as text.
    """

    user_id: UserId
    query: str = Field(min_length=1)
    response: str
    timestamp: datetime | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _timestamp_aware(cls, value: datetime | None) -> datetime | None:
        return as_aware(value)

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be blank")
        return value

    @property
    def is_evidence(self) -> bool:
        """Whether this is something the user did, with the response that was right for them.

        Only such interactions are evidence of the user: simulated, critiqued and summarized by
        alignment and the profile. A note the agent saved (``memory_update``; no response) is not.
        """
        return bool(self.response.strip())

    @property
    def interaction_id(self) -> str:
        """A content hash: ingesting the same interaction twice stores it once."""
        payload = json.dumps(
            [self.user_id, self.query, self.response, self.timestamp.isoformat() if self.timestamp else None],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


class Memory(Record):
    """An interaction as episodic memory holds it: with its id, and whether a newer one replaced it."""

    interaction: Interaction
    memory_id: str
    stored_at: datetime = Field(default_factory=utc_now)
    superseded_by: str | None = None
    score: float | None = None  # similarity to the query, set on retrieval only

    @field_validator("stored_at")
    @classmethod
    def _stored_at_aware(cls, value: datetime) -> datetime:
        return as_aware(value)

    @property
    def user_id(self) -> str:
        return self.interaction.user_id


class Profile(Record):
    """Semantic memory: facts computed from a user's history and an LLM summary of it."""

    user_id: UserId
    text: str
    facts: str = ""
    num_interactions: int = Field(ge=0)
    created_at: datetime = Field(default_factory=utc_now)


class PersonaProvenance(Record):
    """Where a persona version came from."""

    #: "recount": the persona's computed facts recounted from a grown history (no LM).
    source: Literal["seed", "alignment", "recount", "rollback", "manual"]
    interaction_ids: tuple[str, ...] = ()
    critique: str | None = None
    run_id: str | None = None
    note: str | None = None


class Persona(Record):
    """One version of a user's persona: the system prompt that conditions their answers."""

    user_id: UserId
    version: int = Field(ge=1)
    parent_version: int | None = None
    text: str = Field(min_length=1)
    created_at: datetime = Field(default_factory=utc_now)
    provenance: PersonaProvenance

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        # A blank system prompt is no persona; a file edited to one is refused when read, not
        # found out by the agent mid-answer.
        if not value.strip():
            raise ValueError("a persona must not be blank")
        return value


class AnswerFormat(Record):
    """What an answer must look like: free text, a label from a fixed set, or a numeric rating."""

    kind: Literal["text", "label", "rating"] = "text"
    labels: tuple[str, ...] = ()
    min_rating: float = 1.0
    max_rating: float = 5.0

    @classmethod
    def label(cls, *labels: str) -> AnswerFormat:
        """Answer with one of ``labels``: at least two, no two the same up to case and spacing."""
        return cls(kind="label", labels=labels)

    @classmethod
    def rating(cls, low: float = 1.0, high: float = 5.0) -> AnswerFormat:
        """Answer with a number from ``low`` to ``high`` (finite numbers, ``low`` below ``high``)."""
        return cls(kind="rating", min_rating=low, max_rating=high)

    @classmethod
    def text(cls) -> AnswerFormat:
        """Answer in free text (the default)."""
        return cls(kind="text")

    @model_validator(mode="after")
    def _labels_match_kind(self) -> "AnswerFormat":
        if self.kind == "label" and len(self.labels) < 2:
            raise ValueError("a label answer format needs at least two labels")
        if self.kind != "label" and self.labels:
            raise ValueError("labels are only allowed with kind='label'")
        problem = _labels_problem(self.labels) or _rating_range_problem(self.min_rating, self.max_rating)
        if problem is not None:
            raise ValueError(problem)
        return self


def _labels_problem(labels: Sequence[str]) -> str | None:
    # match_label compares labels up to case and spacing, so two labels equal that way are one
    # label to every parser and metric: an answer could never be told apart as the other.
    seen: dict[str, str] = {}
    for label in labels:
        if not label.strip():
            return "a label is blank; give each label as text"
        key = _squash(label)
        if key not in seen:
            seen[key] = label
        elif seen[key] == label:
            return f"the label {label!r} is given twice; give each label once"
        else:
            return (
                f"the labels {seen[key]!r} and {label!r} differ only in case or spacing, and answers are "
                "matched ignoring both; give each label once"
            )
    return None


def _rating_range_problem(low: float, high: float) -> str | None:
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"a rating range is two finite numbers, not {low:g} and {high:g}; give two numbers, the lowest first"
    if low >= high:
        return f"the lowest rating ({low:g}) must be below the highest ({high:g}); give two numbers, the lowest first"
    return None


def _squash(text: str) -> str:
    return " ".join(text.split()).casefold()


def match_label(text: Any, labels: Sequence[str]) -> str | None:
    """The allowed label a free-text answer names, or ``None`` if it names none.

    The one label matcher: the agent's answer parser, the alignment metric and the evaluation
    metrics all use it, so an answer the metric counts as right is never rejected as unparseable.
    Tried in order: the exact label; the label up to case and whitespace (and surrounding quotes,
    asterisks or a final full stop); a label contained in the text as a phrase, earliest first and
    the longest at the same position (so "WORLD NEWS" wins over "NEWS").

    Examples:
        >>> match_label(" Politics.", ("politics", "sports"))
        'politics'
    """
    text = str(text)
    if text in labels:
        return text
    squashed = {_squash(label): label for label in labels}
    answer = _squash(text).strip("\"'`*").rstrip(".").strip()
    if answer in squashed:
        return squashed[answer]
    best: tuple[int, int, str] | None = None
    for key, label in squashed.items():
        match = re.search(rf"(?<!\w){re.escape(key)}(?!\w)", answer)
        if match and (best is None or (match.start(), -len(key)) < (best[0], best[1])):
            best = (match.start(), -len(key), label)
    return best[2] if best else None


class ToolCall(Record):
    """One tool the agent chose, what it passed and what came back."""

    name: str
    tool_input: str
    observation: str


class LMUsage(Record):
    """LM cost of a step: calls, tokens and wall-clock seconds."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: LMUsage) -> LMUsage:
        return LMUsage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            seconds=self.seconds + other.seconds,
        )


# --- Trace events -------------------------------------------------------------------------------
# One alignment run writes one JSONL file of these, in order. `kind` tells them apart.


#: How a user's compile ended.
CompileStatus = Literal["edited", "unchanged", "budget_exhausted", "failed"]

#: How a user's compile in a many-user run ended: a compile status, or "conflict" when the user's
#: persona changed while it ran, so its edit was not stored.
UserCompileStatus = Literal["edited", "unchanged", "budget_exhausted", "failed", "conflict"]


class _TraceEventBase(Record):
    run_id: str
    user_id: str
    iteration: int = 0
    at: datetime = Field(default_factory=utc_now)
    usage: LMUsage = Field(default_factory=LMUsage)


class CompileStarted(_TraceEventBase):
    kind: Literal["compile_started"] = "compile_started"
    persona_version: int | None
    persona_text: str
    config: dict[str, Any]
    batch_ids: tuple[str, ...]


#: What a simulation was for: the batch the critiques are about, the valset the gate scores, or
#: the gate's trial of an edited persona (on the valset, or on the batch without one).
SimulationPhase = Literal["batch", "valset", "trial"]


class Simulated(_TraceEventBase):
    kind: Literal["simulated"] = "simulated"
    phase: SimulationPhase = "batch"
    interaction_id: str
    query: str
    simulated: str
    truth: str
    score: float
    feedback: str | None = None


class Critiqued(_TraceEventBase):
    kind: Literal["critiqued"] = "critiqued"
    interaction_id: str
    critique: str


class Aggregated(_TraceEventBase):
    kind: Literal["aggregated"] = "aggregated"
    gradient: str
    num_critiques: int
    truncated: bool = False


class Edited(_TraceEventBase):
    kind: Literal["edited"] = "edited"
    persona_before: str
    persona_after: str
    diff: str


class Gated(_TraceEventBase):
    kind: Literal["gated"] = "gated"
    accepted: bool
    reason: str
    score_before: float
    score_after: float
    #: Only in traces written before compile became pure (it now stores no version).
    persona_version: int | None = None


class StepSkipped(_TraceEventBase):
    kind: Literal["step_skipped"] = "step_skipped"
    step: str
    error: str


class CompileFinished(_TraceEventBase):
    kind: Literal["compile_finished"] = "compile_finished"
    status: CompileStatus
    score_initial: float
    score_final: float
    iterations: int
    #: Only in traces written before compile became pure: see PersonaCommitted.
    persona_version: int | None = None


class PersonaCommitted(_TraceEventBase):
    """The caller stored the run's aligned persona (after the compile finished)."""

    kind: Literal["persona_committed"] = "persona_committed"
    persona_version: int
    parent_version: int | None


TraceEvent = Annotated[
    Union[
        CompileStarted, Simulated, Critiqued, Aggregated, Edited, Gated, StepSkipped, CompileFinished, PersonaCommitted
    ],
    Field(discriminator="kind"),
]


class UserCompileRecord(Record):
    """How one user's compile in a many-user run ended (a line of the run's manifest)."""

    user_id: str
    run_id: str
    status: UserCompileStatus
    persona_version: int | None = None
    score_initial: float | None = None
    score_final: float | None = None
    error: str | None = None
    usage: LMUsage = Field(default_factory=LMUsage)


class EvalResult(Record):
    """One method's figures on one task: quality beside cost."""

    task: str
    method: str
    num_users: int
    num_queries: int
    metrics: dict[str, float]
    lm_calls_per_query: float = 0.0
    tokens_per_query: float = 0.0
    seconds_per_query: float = 0.0
    parse_failures: int = 0
