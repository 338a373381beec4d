"""OpenTelemetry spans: one ask and one compile through the server, caught by an in-memory exporter,
with token counts that match the HTTP response and the JSONL trace."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from server_helpers import KEYS, LABELS, history, served, wait_for_job, workspace
from test_server_restart import DRIVER, free_port

from personaagent import telemetry
from personaagent.config import load_settings
from personaagent.traces import TraceReader

PROMPT, COMPLETION = "llm.token_count.prompt", "llm.token_count.completion"


@pytest.fixture
def exporter():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter, provider
    telemetry.disable()


def tokens(span) -> int:
    return span.attributes[PROMPT] + span.attributes[COMPLETION]


def named(spans, name):
    return [span for span in spans if span.name == name]


def descendants(spans, root):
    children = {}
    for span in spans:
        if span.parent is not None:
            children.setdefault(span.parent.span_id, []).append(span)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop().context.span_id, []):
            found.append(child)
            todo.append(child)
    return found


def test_an_ask_and_a_compile_produce_their_spans_with_the_traced_token_counts(tmp_path, exporter):
    memory, provider = exporter
    telemetry.enable(provider)
    ws = workspace(tmp_path / "home")
    with served(ws) as client:
        client.post("/v1/users/alice/interactions", json={"interactions": history("alice", "ALICE")})
        answer = client.post("/v1/users/alice/ask", json={"query": "ALICE match report 9"}).json()
        ask_spans = list(memory.get_finished_spans())
        memory.clear()
        job = wait_for_job(client, client.post("/v1/users/alice/compile",
                                               json={"answer_format": LABELS.model_dump()}).json()["job_id"])
        compile_spans = list(memory.get_finished_spans())
    assert job["state"] == "done"

    # the memory write
    (add,) = named(ask_spans, "personaagent.memory.add")
    assert add.attributes["user.id"] == "alice" and add.attributes["personaagent.added"] == 5

    # the ask: retrieval, the tool call (with its own search), and each LM call with its tokens
    (ask,) = named(ask_spans, "personaagent.ask")
    inside = descendants(ask_spans, ask)
    assert ask.attributes["user.id"] == "alice" and ask.attributes["openinference.span.kind"] == "AGENT"
    assert len([s for s in inside if s.name == "personaagent.memory.search"]) == 2  # retrieval + the tool's
    (tool,) = [s for s in inside if s.name == "personaagent.tool"]
    assert tool.attributes["tool.name"] == "memory_search"
    assert named(descendants(ask_spans, tool), "personaagent.memory.search")
    lm_calls = [s for s in inside if s.name == "personaagent.lm"]
    assert len(lm_calls) == answer["usage"]["calls"] == 2
    assert all(tokens(s) > 0 for s in lm_calls)
    assert sum(tokens(s) for s in lm_calls) == tokens(ask) == (
        answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"])

    # the compile: one span per alignment step, each with the run id and its JSONL event's tokens
    (compiled,) = named(compile_spans, "personaagent.compile")
    assert compiled.attributes["personaagent.run_id"] == job["run_id"]
    events = [e for e in TraceReader(ws.settings.traces_dir).user(job["run_id"], "alice").events
              if e.kind in telemetry._STEPS]
    steps = sorted((s for s in compile_spans if s.name.startswith("personaagent.alignment.")),
                   key=lambda s: s.start_time)
    assert [s.name.rsplit(".", 1)[1] for s in steps] == [telemetry._STEPS[e.kind] for e in events]
    assert {"simulate", "critique", "edit", "gate"} <= {s.name.rsplit(".", 1)[1] for s in steps}
    for step, event in zip(steps, events):
        assert step.attributes["personaagent.run_id"] == job["run_id"]
        assert step.attributes["user.id"] == "alice"
        assert step.attributes["personaagent.iteration"] == event.iteration
        assert tokens(step) == event.usage.tokens
        assert step.parent.span_id == compiled.context.span_id
    # ...and the LM calls made in each step's window add up to that step's tokens
    lm_calls = named(compile_spans, "personaagent.lm")
    for step in steps:
        if step.name.endswith((".simulate", ".critique", ".edit")):
            window = [s for s in lm_calls if step.start_time <= s.start_time and s.end_time <= step.end_time]
            assert sum(tokens(s) for s in window) == tokens(step) > 0
    finished = next(e for e in TraceReader(ws.settings.traces_dir).user(job["run_id"], "alice").events
                    if e.kind == "compile_finished")
    non_gate = [s for s in steps if not s.name.endswith(".gate")]  # a gate's tokens are its re-simulations'
    assert sum(tokens(s) for s in non_gate) == finished.usage.tokens


def test_user_ids_are_hashed_in_spans_when_the_setting_says_so(tmp_path, exporter):
    memory, provider = exporter
    telemetry.enable(provider, hash_user_ids=True)
    with served(workspace(tmp_path / "home")) as client:
        client.post("/v1/users/alice/interactions", json={"interactions": history("alice", "ALICE")})
        client.post("/v1/users/alice/ask", json={"query": "ALICE match report 9"})
    spans = memory.get_finished_spans()
    hashed = hashlib.sha256(b"alice").hexdigest()[:16]
    assert {s.attributes["user.id"] for s in spans if "user.id" in s.attributes} == {hashed}
    assert all("alice" not in json.dumps(dict(s.attributes)) for s in spans)


def test_tracing_is_off_by_default_and_then_costs_no_callbacks(tmp_path, exporter):
    memory, _ = exporter
    assert load_settings().telemetry is False
    assert telemetry.configure(load_settings()) is False and not telemetry.enabled()
    ws = workspace(tmp_path / "home")
    assert "callbacks" not in ws.lm_settings()
    with served(ws) as client:
        client.post("/v1/users/alice/interactions", json={"interactions": history("alice", "ALICE")})
        assert client.post("/v1/users/alice/ask", json={"query": "q"}).status_code == 200
    assert memory.get_finished_spans() == ()


@pytest.mark.parametrize(
    "variable,expected",
    [("console", ["ConsoleSpanExporter"]), ("none", []), ("console,none", ["ConsoleSpanExporter"]),
     ("otlp", ["OTLPSpanExporter"]), (None, ["OTLPSpanExporter"]), ("zipkin", [])],
)
def test_exporters_are_chosen_by_the_standard_variable(monkeypatch, variable, expected):
    if variable is None:
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    else:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", variable)
    assert [type(e).__name__ for e in telemetry._exporters()] == expected


def test_the_setting_and_otel_variables_turn_on_export_in_a_served_process(tmp_path):
    # The real configure(): PERSONAAGENT_TELEMETRY on, OTEL_TRACES_EXPORTER=console; the spans
    # are printed by the SDK's console exporter when the server stops.
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(DRIVER.parent), "PERSONAAGENT_TELEMETRY": "true",
           "PERSONAAGENT_TELEMETRY_HASH_USER_IDS": "true", "OTEL_TRACES_EXPORTER": "console",
           "OTEL_SERVICE_NAME": "persona-test"}
    process = subprocess.Popen([sys.executable, str(DRIVER), str(tmp_path / "home"), str(port), "0"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEYS[0]}"})
    try:
        for _ in range(600):
            try:
                client.get("/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        client.post("/v1/users/alice/interactions", json={"interactions": history("alice", "ALICE")})
        assert client.post("/v1/users/alice/ask", json={"query": "ALICE match report 9"}).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0].decode()
        client.close()
    assert '"name": "personaagent.ask"' in output and '"name": "personaagent.lm"' in output
    assert '"service.name": "persona-test"' in output
    assert hashlib.sha256(b"alice").hexdigest()[:16] in output and '"user.id": "alice"' not in output
