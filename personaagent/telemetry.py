"""OpenTelemetry spans of asks, memory reads and writes, LM calls and alignment steps.

Off by default. ``configure(settings)`` turns it on when the ``telemetry`` setting is true, with a
tracer provider whose exporters the standard ``OTEL_*`` variables choose (``OTEL_TRACES_EXPORTER``
= ``otlp`` (default), ``console`` or ``none``; ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_SERVICE_NAME``, ...). A program with its own provider calls ``enable(provider)`` instead.

Spans carry OpenInference attribute names where they fit (``openinference.span.kind``,
``llm.token_count.*``, ``user.id``), ``personaagent.run_id`` linking alignment spans to the JSONL
trace of that run, and the user id (its SHA-256 prefix when ``telemetry_hash_user_ids`` is set).
The JSONL traces stay the record of what an optimization did; spans are for watching a service.

Span names: ``personaagent.ask``, ``personaagent.memory.search``, ``personaagent.memory.add``,
``personaagent.tool``, ``personaagent.lm``, ``personaagent.compile`` and
``personaagent.alignment.<step>`` (simulate, critique, aggregate, edit, gate, skipped).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import dspy
from dspy.utils.callback import BaseCallback
from opentelemetry import context as otel_context
from opentelemetry import trace

from personaagent.runtime.usage import metered, token_counts

if TYPE_CHECKING:
    from personaagent.config import Settings

__all__ = ["configure", "enable", "disable", "enabled", "span", "lm_callbacks", "record_trace_event"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_tracer: trace.Tracer | None = None
_hash_user_ids = False

#: OpenInference attribute names (openinference-semantic-conventions), kept here as plain strings.
SPAN_KIND = "openinference.span.kind"
USER_ID = "user.id"
RUN_ID = "personaagent.run_id"
PROMPT_TOKENS = "llm.token_count.prompt"
COMPLETION_TOKENS = "llm.token_count.completion"
TOTAL_TOKENS = "llm.token_count.total"

#: The step each trace event closes, as the span name's suffix.
_STEPS = {
    "simulated": "simulate",
    "critiqued": "critique",
    "aggregated": "aggregate",
    "edited": "edit",
    "gated": "gate",
    "step_skipped": "skipped",
}


def _exporters() -> list[Any]:
    """The span exporters ``OTEL_TRACES_EXPORTER`` names (comma-separated; default ``otlp``)."""
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    found = {ep.name: ep for ep in entry_points(group="opentelemetry_traces_exporter")}
    exporters = []
    for name in names:
        if name == "none":
            continue
        # "otlp" is registered by the opentelemetry-exporter-otlp bundle; the server extra
        # installs only its HTTP half, which registers "otlp_proto_http".
        entry = found.get(name) or (found.get("otlp_proto_http") if name == "otlp" else None)
        if entry is None:
            logger.warning("OTEL_TRACES_EXPORTER names %r, which is not installed; known: %s", name, sorted(found))
            continue
        exporters.append(entry.load()())
    return exporters


def configure(settings: Settings) -> bool:
    """Turn tracing on if ``settings.telemetry`` is set (once per process; later calls keep it).

    Returns:
        Whether tracing is on.
    """
    if not settings.telemetry:
        return enabled()
    with _lock:
        already = _tracer is not None
    if not already:
        # The SDK is in the server extra; imported here so the library runs without it.
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
        defaults = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "personaagent"}
        provider = TracerProvider(resource=Resource.create(defaults))
        for exporter in _exporters():
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        enable(provider, hash_user_ids=settings.telemetry_hash_user_ids)
    return True


def enable(tracer_provider: Any = None, *, hash_user_ids: bool = False) -> None:
    """Emit spans through ``tracer_provider`` (defaults to the global one).

    Args:
        tracer_provider: an OpenTelemetry TracerProvider, e.g. one with an in-memory exporter.
        hash_user_ids: put ``sha256(user id)[:16]`` in spans instead of the id. Defaults to False.
    """
    global _tracer, _hash_user_ids
    with _lock:
        _tracer = trace.get_tracer("personaagent", tracer_provider=tracer_provider)
        _hash_user_ids = hash_user_ids


def disable() -> None:
    """Stop emitting spans (the provider and its exporters are left to their owner)."""
    global _tracer
    with _lock:
        _tracer = None


def enabled() -> bool:
    return _tracer is not None


def user_attribute(user_id: str) -> str:
    """The user id as spans carry it: the id, or its hash when the setting says so."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:16] if _hash_user_ids else user_id


def _attributes(user_id: str | None, run_id: str | None, kind: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    attributes = {key: value for key, value in extra.items() if value is not None}
    if kind is not None:
        attributes[SPAN_KIND] = kind
    if user_id is not None:
        attributes[USER_ID] = user_attribute(user_id)
    if run_id is not None:
        attributes[RUN_ID] = run_id
    return attributes


@contextmanager
def span(name: str, *, user_id: str | None = None, run_id: str | None = None, kind: str | None = None,
         count_tokens: bool = False, attributes: dict[str, Any] | None = None) -> Iterator[trace.Span]:
    """A span around a block (a non-recording one when tracing is off); exceptions are recorded.

    Args:
        name: the span name, ``personaagent.<what>``.
        user_id: whose work this is (hashed if the setting says so).
        run_id: the alignment run, which names the JSONL trace.
        kind: the OpenInference span kind (AGENT, RETRIEVER, TOOL, LLM, CHAIN).
        count_tokens: meter the block's LM calls and put their tokens on the span (this also
            gives the LM call spans inside their token counts). Defaults to False.
        attributes: more attributes; None values are left out.
    """
    tracer = _tracer
    if tracer is None:
        yield trace.INVALID_SPAN
        return
    with tracer.start_as_current_span(name, attributes=_attributes(user_id, run_id, kind, attributes or {})) as current:
        if not count_tokens:
            yield current
            return
        with metered() as meter:
            try:
                yield current
            finally:
                usage = meter.usage
                set_usage(current, usage.prompt_tokens, usage.completion_tokens)
                current.set_attribute("personaagent.lm_calls", usage.calls)


def set_usage(target: trace.Span, prompt_tokens: int, completion_tokens: int) -> None:
    target.set_attributes({PROMPT_TOKENS: prompt_tokens, COMPLETION_TOKENS: completion_tokens,
                           TOTAL_TOKENS: prompt_tokens + completion_tokens})


class _LMSpans(BaseCallback):
    """A DSPy callback: one span per LM call, with the call's tokens.

    The tokens come from the DSPy usage tracker active around the call (``metered()`` blocks
    and ``track_usage``): the entries it gained during the call are this call's, because calls
    within one tracker's context run one after another.
    """

    def __init__(self) -> None:
        self._open: dict[str, tuple[trace.Span, Any, int, Any]] = {}
        self._lock = threading.Lock()

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        tracer = _tracer
        if tracer is None:
            return
        model = getattr(instance, "model", "unknown")
        started = tracer.start_span("personaagent.lm", attributes={SPAN_KIND: "LLM", "llm.model_name": str(model)})
        token = otel_context.attach(trace.set_span_in_context(started))
        tracker = dspy.settings.usage_tracker
        seen = len(tracker.usage_data[model]) if tracker is not None else 0
        with self._lock:
            self._open[call_id] = (started, token, seen, (tracker, model))

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._lock:
            opened = self._open.pop(call_id, None)
        if opened is None:
            return
        ended, token, seen, (tracker, model) = opened
        if tracker is not None:
            prompt = completion = 0
            for entry in tracker.usage_data[model][seen:]:
                entry_prompt, entry_completion = token_counts(entry)
                prompt, completion = prompt + entry_prompt, completion + entry_completion
            set_usage(ended, prompt, completion)
        if exception is not None:
            ended.record_exception(exception)
            ended.set_status(trace.Status(trace.StatusCode.ERROR, str(exception)))
        otel_context.detach(token)
        ended.end()


_LM_SPANS = _LMSpans()


def lm_callbacks() -> list[BaseCallback]:
    """The DSPy callbacks to add to an LM context: the LM-call spans when tracing is on."""
    return [_LM_SPANS] if _tracer is not None else []


def record_trace_event(event: Any, *, started_ns: int) -> None:
    """A span for the alignment step a trace event closes, from ``started_ns`` to now.

    Called by the TraceWriter as each event is written, so the step span covers the step's work
    (the LM call spans in that window) and carries the event's own token counts, run id and
    iteration: the span and the JSONL line agree by construction.
    """
    tracer = _tracer
    step = _STEPS.get(getattr(event, "kind", ""))
    if tracer is None or step is None:
        return
    attributes = _attributes(event.user_id, event.run_id, "CHAIN", {
        "personaagent.iteration": event.iteration,
        "personaagent.step": getattr(event, "step", None),
        "personaagent.score": getattr(event, "score", None),
        "personaagent.accepted": getattr(event, "accepted", None),
        "personaagent.lm_calls": event.usage.calls,
    })
    step_span = tracer.start_span(f"personaagent.alignment.{step}", start_time=started_ns, attributes=attributes)
    set_usage(step_span, event.usage.prompt_tokens, event.usage.completion_tokens)
    step_span.end(end_time=time.time_ns())
