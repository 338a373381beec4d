"""The bodies the HTTP API accepts and returns (its OpenAPI schema is generated from these).

Records the library already has (Persona, ToolCall, LMUsage, AnswerFormat, CompileJob) are
returned as they are; the models here are only the request bodies and the responses that
combine them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from personaagent.records import AnswerFormat, LMUsage, Persona, ToolCall

__all__ = [
    "ErrorBody",
    "ErrorDetail",
    "FieldError",
    "AddInteractionsRequest",
    "AddInteractionsResponse",
    "RejectedItem",
    "AskRequest",
    "AskResponse",
    "RetrievedMemory",
    "PersonaVersions",
    "RollbackRequest",
    "TraceResponse",
    "Health",
]

#: Most interactions one request may add; larger imports go in several requests.
MAX_INTERACTIONS_PER_REQUEST = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldError(BaseModel):
    """One problem with a request field."""

    loc: list[str | int] = Field(description="Where the problem is, e.g. ['body', 'query'].")
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable machine-readable code, e.g. 'unauthorized', 'not_found'.")
    message: str = Field(description="What went wrong and what to do about it.")
    request_id: str = Field(description="Quote this when reporting a problem; it is in the server's log.")
    fields: list[FieldError] = Field(default_factory=list, description="The invalid fields (422 only).")


class ErrorBody(BaseModel):
    """Every error response (4xx and 5xx) has this body."""

    error: ErrorDetail


class AddInteractionsRequest(_Body):
    interactions: list[Any] = Field(
        min_length=1,
        max_length=MAX_INTERACTIONS_PER_REQUEST,
        description=(
            "Interaction records, as in an ingest file: query and response (a string or number) are "
            "required, timestamp (ISO 8601 or Unix seconds) is optional, other fields become metadata. "
            "user_id may be left out; if given it must be the user in the path. Each record is "
            "checked on its own: bad ones are reported, valid ones are stored."
        ),
        examples=[[{"query": "Rate the movie: Heat (1995)", "response": "4.5", "timestamp": "2024-01-02T10:00:00Z"}]],
    )


class RejectedItem(BaseModel):
    index: int = Field(description="Position of the record in the request's list, from 0.")
    error: str


class AddInteractionsResponse(BaseModel):
    added: int = Field(description="Records newly stored.")
    duplicates: int = Field(description="Valid records that were already stored (or repeated in the request).")
    memory_ids: list[str | None] = Field(description="Per record, in request order: its memory id, or null if rejected.")
    rejected: list[RejectedItem]


class AskRequest(_Body):
    query: str = Field(min_length=1, description="What the user asks now.")
    answer_format: AnswerFormat | None = Field(
        default=None, description="Free text (default), a label from a set, or a rating in a range."
    )

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be blank")
        return value


class RetrievedMemory(BaseModel):
    memory_id: str
    score: float | None = Field(description="Similarity to the query.")


class AskResponse(BaseModel):
    user_id: str
    answer: str | float = Field(description="A string, or a number for a rating answer format.")
    persona_version: int | None = Field(description="The persona version used (null: the seed text, never compiled).")
    used_tools: list[ToolCall]
    retrieved: list[RetrievedMemory]
    usage: LMUsage = Field(description="LM calls, tokens and seconds this answer took.")


class PersonaVersions(BaseModel):
    user_id: str
    versions: list[Persona] = Field(description="Oldest first; the last one is current.")


class RollbackRequest(_Body):
    version: int = Field(ge=1, description="The version whose text becomes current again (saved as a new version).")


class TraceResponse(BaseModel):
    run_id: str
    user_id: str
    events: list[dict[str, Any]] = Field(description="The run's trace events for this user, in order (JSONL records).")


class Health(BaseModel):
    status: str = "ok"
    version: str
