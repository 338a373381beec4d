"""`personaagent serve`: refuses to start without a key, serves with one, never shows the key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from test_server_restart import free_port

from pydantic import SecretStr

from personaagent.server import is_loopback


def test_serve_refuses_to_start_without_an_api_key(invoke):
    result = invoke("serve")
    assert result.exit_code == 1
    assert result.output.startswith("Error: no API key: set PERSONAAGENT_API_KEYS")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.com", "::"])
def test_serve_without_auth_is_refused_off_loopback(invoke, host):
    result = invoke("serve", "--no-auth", "--host", host)
    assert result.exit_code == 1
    assert "--no-auth is allowed on a loopback host only" in result.output


def test_serve_without_auth_and_with_keys_is_ambiguous(invoke, cli_workspace, monkeypatch):
    monkeypatch.setattr(cli_workspace.settings, "api_keys", SecretStr("k1"))
    result = invoke("serve", "--no-auth")
    assert result.exit_code == 1 and "drop one of them" in result.output


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                           ("localhost", True), ("0.0.0.0", False), ("10.0.0.1", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_the_serve_command_serves_the_api_and_never_prints_the_keys(tmp_path):
    keys = "first-secret-key, second-secret-key"
    port = free_port()
    env = {**os.environ, "PERSONAAGENT_API_KEYS": keys, "PERSONAAGENT_HOME": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "personaagent", "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/healthz")
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.stdout.read().decode()
                time.sleep(0.1)
        assert health.status_code == 200
        assert httpx.get(f"{base}/v1/users/alice/persona").status_code == 401
        for key in ("first-secret-key", "second-secret-key"):
            response = httpx.get(f"{base}/v1/users/alice/persona", headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 404  # authenticated; alice has no persona
    finally:
        process.send_signal(signal.SIGINT)
        exit_code = process.wait(30)
    output = process.stdout.read().decode()
    assert exit_code == 0, output
    assert "secret-key" not in output


def test_api_keys_come_comma_separated_from_the_environment_and_stay_hidden(monkeypatch):
    from personaagent.config import load_settings

    monkeypatch.setenv("PERSONAAGENT_API_KEYS", " first-secret , second-secret,, ")
    settings = load_settings()
    assert settings.api_key_values == ("first-secret", "second-secret")
    assert "secret" not in repr(settings) and "secret" not in str(settings.model_dump())
    assert load_settings(api_keys=["a", "b"]).api_key_values == ("a", "b")  # a config file's list
    monkeypatch.delenv("PERSONAAGENT_API_KEYS")
    assert load_settings().api_key_values == ()
