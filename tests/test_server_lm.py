"""build_lm against OpenAI-compatible servers (``lm="openai/..."`` plus ``lm_api_base``).

A stdlib fake server on 127.0.0.1 records the JSON bodies DSPy sends (fast, always runs). Tests
marked e2e start llama-cpp-python's real server (``python -m llama_cpp.server``) with the packaged
SmolLM2 model; they skip when its server extras (fastapi, uvicorn, ...) are not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import dspy
import pytest
from dspy.utils.exceptions import LMError, LMTimeoutError

from personaagent.config import Settings
from personaagent.errors import ModelNotAvailable
from personaagent.runtime import adapter_for, build_lm, resolve_model
from personaagent.runtime.local_lm import best_cpu_backend

LABELS = ("sports", "politics", "technology", "food")
CAP = 32
API_KEY = "sk-local"


class Classify(dspy.Signature):
    """Classify the news headline by topic."""

    text: str = dspy.InputField()
    label: Literal["sports", "politics", "technology", "food"] = dspy.OutputField()


def _server_settings(api_base: str) -> Settings:
    return Settings(lm="openai/smollm2", lm_api_base=api_base, lm_api_key=API_KEY, lm_max_tokens=CAP)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- a fake OpenAI-compatible server -----------------------------------------------------------


class FakeServer:
    """Answers every chat completion with a ChatAdapter-formatted label and keeps what it got."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                content = f"[[ ## label ## ]]\n{fake.answer}\n\n[[ ## completed ## ]]"
                self._reply({
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62},
                })

            def _reply(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_base = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer(answer="politics")
    try:
        yield server
    finally:
        server.stop()


def test_predict_reaches_the_server_with_the_cap_as_max_tokens(fake_server: FakeServer) -> None:
    settings = _server_settings(fake_server.api_base)
    lm = build_lm(settings)
    with dspy.context(lm=lm, adapter=adapter_for(settings, lm)):
        prediction = dspy.Predict(Classify)(text="Senate passes the budget bill")

    assert prediction.label == "politics"
    assert len(fake_server.requests) == 1
    path, headers, body = fake_server.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == "smollm2"
    # llama.cpp's server reads only max_tokens; max_completion_tokens would be silently ignored.
    assert body["max_tokens"] == CAP
    assert "max_completion_tokens" not in body
    assert body["temperature"] == 0.0
    assert "Senate passes the budget bill" in json.dumps(body["messages"])


def test_the_users_openai_key_never_reaches_a_server_named_by_url(fake_server, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key")
    settings = Settings(lm="openai/smollm2", lm_api_base=fake_server.api_base, lm_max_tokens=CAP)
    lm = build_lm(settings)
    with dspy.context(lm=lm, adapter=adapter_for(settings, lm)):
        dspy.Predict(Classify)(text="Senate passes the budget bill")
    (_, headers, _), = fake_server.requests
    assert "sk-real-openai-key" not in headers.get("authorization", "")


def test_hosted_providers_keep_dspys_default_engine() -> None:
    # Only a self-hosted openai/ server changes engine: hosted OpenAI accepts max_completion_tokens
    # (its reasoning models require it), and other providers' native dialects already fit.
    for settings in (
        Settings(lm="openai/gpt-4o-mini", lm_api_key="sk-test"),
        Settings(lm="anthropic/claude-3-5-sonnet-20240620", lm_api_key="sk-test"),
        Settings(lm="ollama_chat/llama3.2", lm_api_base="http://127.0.0.1:11434"),
    ):
        state = build_lm(settings).dump_state()
        assert "engine" not in state and "timeout" not in state, settings.lm


def test_unreachable_server_fails_with_a_connection_error() -> None:
    settings = _server_settings(f"http://127.0.0.1:{_free_port()}/v1")
    # Retries would only repeat the refused connection with backoff; one attempt shows the error.
    lm = build_lm(settings).copy(num_retries=0)
    with dspy.context(lm=lm, adapter=adapter_for(settings, lm)), pytest.raises(LMError, match="(?i)connection"):
        dspy.Predict(Classify)(text="Senate passes the budget bill")


def test_stalled_server_times_out_instead_of_hanging() -> None:
    # A server that accepts connections but never answers: the LM's timeout must end the call.
    with socket.socket() as stalled:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen()
        settings = _server_settings(f"http://127.0.0.1:{stalled.getsockname()[1]}/v1")
        built = build_lm(settings)
        assert built.kwargs["timeout"] > 0
        lm = built.copy(timeout=1, num_retries=0)  # the built LM's own bound is 600 s
        with pytest.raises(LMTimeoutError):
            lm("hello")


# --- the real llama.cpp server -----------------------------------------------------------------

_SERVER_EXTRAS = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context")
_STARTUP_SECONDS = 120

# The 135M model cannot follow ChatAdapter's field format on its own (measured: it writes code or
# invalid labels). llama.cpp's server constrains sampling with a GBNF `grammar` request field,
# which DSPy forwards; this one admits exactly ChatAdapter's answer with one of the labels.
_LABEL_GRAMMAR = (
    'root ::= "[[ ## label ## ]]\\n" label "\\n\\n[[ ## completed ## ]]"\n'
    "label ::= " + " | ".join(f'"{label}"' for label in LABELS) + "\n"
)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` with the packaged model on a free loopback port; its API base."""
    missing = [name for name in _SERVER_EXTRAS if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"llama_cpp.server needs {', '.join(missing)} (pip install -e '.[dev]')")
    try:
        model = resolve_model("smollm2-135m-instruct")
    except ModelNotAvailable as exc:
        pytest.skip(str(exc))
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "False",
    ]
    with log_path.open("wb") as log:
        # The server's llama.cpp looks for its CPU backend beside the Python executable; name ours.
        backend = best_cpu_backend()
        env = {**os.environ, **({"GGML_BACKEND_PATH": str(backend)} if backend is not None else {})}
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_until_serving(process, f"http://127.0.0.1:{port}/v1/models", log_path)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_serving(process: subprocess.Popen[bytes], models_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(models_url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    pytest.fail(f"llama_cpp.server did not answer {models_url} within {_STARTUP_SECONDS} s")


@pytest.mark.e2e
def test_real_server_stops_at_the_cap(llama_server: str) -> None:
    # An open-ended request: without a cap the server read, the model writes hundreds of tokens.
    lm = build_lm(_server_settings(llama_server))
    lm("Write a very long story about a dragon, with many chapters.")
    assert 0 < lm.history[-1]["usage"]["completion_tokens"] <= CAP


@pytest.mark.e2e
def test_real_server_predict_returns_a_valid_label(llama_server: str) -> None:
    settings = _server_settings(llama_server)
    lm = build_lm(settings)
    with dspy.context(lm=lm, adapter=adapter_for(settings, lm)):
        prediction = dspy.Predict(Classify)(text="Local team wins the cup final", config={"grammar": _LABEL_GRAMMAR})

    assert prediction.label in LABELS
    assert len(lm.history) == 1  # parsed at the first attempt, no JSON fallback call
    assert 0 < lm.history[-1]["usage"]["completion_tokens"] <= CAP
