"""Fakes for testing and benchmarking programs built on personaagent, without a real model.

``ScriptedLM`` is a ``dspy.utils.DummyLM`` whose reply is computed by a function of the request:
which signature is being asked (by its output field) and the system and user text. Tests use it
to make answers depend on the persona, so the alignment gate can be exercised for real.
"""

from __future__ import annotations

import dataclasses
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dspy.clients.engines.dummy_engine import AsyncDummyEngine, DummyEngine
from dspy.lm15 import Usage
from dspy.utils import DummyLM
from dspy.utils.exceptions import LMRateLimitError

__all__ = ["ScriptedLM", "LMRequest", "persona_sensitive", "choosing_tool", "flaky", "running_server"]

_OUTPUT_SECTION = re.compile(r"Your output fields are:\n(.*?)(?:\n[A-Z]|\Z)", re.DOTALL)
_FIELD_NAME = re.compile(r"^\d+\. `(\w+)`", re.MULTILINE)


@dataclass(frozen=True)
class LMRequest:
    """What a ScriptedLM's script sees of one call."""

    output_fields: tuple[str, ...]
    system: str
    user: str

    def asks_for(self, field: str) -> bool:
        return field in self.output_fields


class ScriptedLM(DummyLM):
    """A DummyLM that answers with ``script(request) -> {output field: value}``.

    Args:
        script: called for every LM call with an LMRequest; returns the output fields' values,
            or a string that is returned verbatim as the whole completion (to simulate garbage or
            unparseable output). It may raise to simulate a provider failure, e.g. DSPy's
            ``LMRateLimitError``, which DSPy retries like a real provider's.

    Examples:
        >>> lm = ScriptedLM(lambda r: {"answer": "SPORTS"} if r.asks_for("answer") else {})  # doctest: +SKIP
    """

    def __init__(self, script: Callable[[LMRequest], dict[str, Any] | str]) -> None:
        super().__init__([], follow_examples=True)
        self.script = script
        self.requests: list[LMRequest] = []
        self._lock = threading.Lock()
        self._engine_spec = _CountingEngine(self)
        self._async_engine_spec = AsyncDummyEngine(self._engine_spec)

    def _use_example(self, messages: list[dict[str, Any]]) -> str:
        system = messages[0]["content"] if messages and messages[0].get("role") == "system" else ""
        user = messages[-1]["content"] if messages else ""
        # DSPy's adapters describe the signature in the system message: "Your output fields are: ..."
        section = _OUTPUT_SECTION.search(system)
        outputs = tuple(_FIELD_NAME.findall(section.group(1))) if section else ()
        request = LMRequest(output_fields=outputs, system=system, user=user)
        with self._lock:
            self.requests.append(request)
        reply = self.script(request)
        return reply if isinstance(reply, str) else self._format_answer_fields(reply)


class _CountingEngine(DummyEngine):
    """DummyLM's engine, reporting tokens as whitespace-separated words (DummyLM reports 0), so
    token accounting (budgets, traces, spans) can be tested."""

    def _complete_messages(self, messages: list[dict[str, Any]]) -> Any:
        response = super()._complete_messages(messages)
        prompt = sum(len(str(message.get("content", "")).split()) for message in messages)
        completion = len((response.message.text or "").split())
        return dataclasses.replace(
            response, usage=Usage(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)
        )


def flaky(
    script: Callable[[LMRequest], dict[str, Any] | str],
    *,
    failure_rate: float,
    max_latency: float = 0.0,
    seed: int = 0,
) -> Callable[[LMRequest], dict[str, Any] | str]:
    """Wrap a ScriptedLM script so calls are slow and some fail, as a loaded provider's do.

    Each call first sleeps a random 0..``max_latency`` seconds; a ``failure_rate`` share of calls
    then fails, in turn as a rate limit (which DSPy retries), a crash, or an empty reply (which
    does not parse). Draws come from one seeded generator, so a single-threaded run repeats.
    """
    rng = random.Random(seed)
    lock = threading.Lock()
    faults = (lambda: LMRateLimitError("429 too many requests", retry_after=0), lambda: RuntimeError("engine crashed"))

    def wrapped(request: LMRequest) -> dict[str, Any] | str:
        with lock:
            latency, roll, kind = rng.uniform(0.0, max_latency), rng.random(), rng.randrange(3)
        time.sleep(latency)
        if roll < failure_rate:
            if kind == 2:
                return ""
            raise faults[kind]()
        return script(request)

    return wrapped


#: The phrase a persona must contain for ``persona_sensitive`` to answer SPORTS.
LOVES_SPORTS = "love SPORTS"


def persona_sensitive(
    *,
    new_persona: str | Exception = "You love SPORTS above everything and answer SPORTS for match reports.",
    critique: str = "The user files most match reports under sports.",
    item_kind: str = "match reports",
    profile: str = "Writes match reports.",
) -> Callable[[LMRequest], dict[str, Any]]:
    """A script whose answers depend on the persona, so alignment can really change them.

    The answer is SPORTS when the system prompt (the persona) contains "love SPORTS", else
    POLITICS; critiques (of free-text answers), kinds of item (for critiques of labels and
    ratings), edits and profiles are the given texts (an Exception as ``new_persona`` is raised,
    to fail the edit step). Any other request fails the test that made it.
    """

    def script(request: LMRequest) -> dict[str, Any]:
        if request.asks_for("answer"):
            return {"answer": "SPORTS" if LOVES_SPORTS in request.system else "POLITICS"}
        if request.asks_for("critique"):
            return {"critique": critique}
        if request.asks_for("item_kind"):
            return {"item_kind": item_kind}
        if request.asks_for("new_persona"):
            if isinstance(new_persona, Exception):
                raise new_persona
            return {"new_persona": new_persona}
        if request.asks_for("profile"):
            return {"profile": profile}
        raise AssertionError(f"unexpected request for {request.output_fields}")

    return script


def choosing_tool(
    script: Callable[[LMRequest], dict[str, Any] | str], *, tool: str = "memory_search", tool_input: str = "match report"
) -> Callable[[LMRequest], dict[str, Any] | str]:
    """Wrap a script so every tool choice calls ``tool`` with ``tool_input`` (the action module
    stops after its step budget); every other request goes to ``script``."""

    def wrapped(request: LMRequest) -> dict[str, Any] | str:
        if request.asks_for("tool_name"):
            return {"tool_name": tool, "tool_input": tool_input}
        return script(request)

    return wrapped


@contextmanager
def running_server(app: Any, *, host: str = "127.0.0.1", timeout: float = 30.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a background thread on a free loopback port.

    Yields the base URL (``http://127.0.0.1:PORT``); on exit the server shuts down as on Ctrl-C
    (the app's shutdown runs). Needs the ``server`` extra.
    """
    import uvicorn  # the server extra

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
