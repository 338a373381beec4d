"""An LM that cannot be used at all (no key, unknown model, unreachable server) stops the work
with one message, instead of failing every item, user or query the same way."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from dspy.utils.exceptions import LMAuthError, LMNotConfiguredError, LMRateLimitError, LMServerError, LMTransportError

from personaagent import cli, testing
from personaagent.errors import CompileStopped
from personaagent.config import load_settings
from personaagent.optimizers import PersonaAlignment, compile_users
from personaagent.testing import ScriptedLM
from personaagent.workspace import Workspace
from tests.test_optimizer import LABELS, add_history, seed

NO_KEY = LMNotConfiguredError(
    "[openai/gpt-4o-mini] no API key found for provider 'openai-chat'. Set OPENAI_API_KEY in the environment.\n\n"
    "  To fix:\n    - Pass the key explicitly (api_key= on dspy.LM)"
)


def failing_on(field: str, error: Exception):
    """persona_sensitive, except that every request for ``field`` raises ``error``."""
    base = testing.persona_sensitive()

    def script(request):
        if request.asks_for(field):
            raise error
        return base(request)

    return script


@pytest.mark.parametrize("field", ["answer", "item_kind", "new_persona"])
@pytest.mark.parametrize("error", [NO_KEY, LMAuthError("invalid API key"), LMTransportError("connection refused")])
def test_alignment_stops_on_an_lm_that_cannot_be_used_in_any_step(make_ws, field, error):
    ws = make_ws(failing_on(field, error))
    agent, _ = seed(add_history(ws, "u1", ["SPORTS"] * 6))
    with pytest.raises(type(error)):
        PersonaAlignment(num_recent=3).compile(agent)


def test_a_failure_of_one_call_still_only_fails_that_item(make_ws):
    # A rate limit that outlived DSPy's retries is about one call, not the LM: the run goes on.
    ws = make_ws(failing_on("answer", LMRateLimitError("slow down")))
    agent, _ = seed(add_history(ws, "u1", ["SPORTS"] * 6))
    result = PersonaAlignment(num_recent=3).compile(agent).alignment_result
    assert result.status == "failed"  # every simulation failed, and the result says so


def test_compile_users_stops_at_the_first_user_and_keeps_finished_ones(make_ws):
    ws = make_ws(testing.persona_sensitive())
    for user in ("a", "b", "c"):
        add_history(ws, user, ["SPORTS"] * 4)
    aligner = PersonaAlignment(traces_dir=ws.settings.traces_dir)
    options = {"answer_format": LABELS, "use_actions": False}
    [done] = compile_users(ws, ["a"], aligner=aligner, agent_options=options)
    ws.lm.script = failing_on("profile", NO_KEY)
    calls_before = len(ws.lm.requests)
    with pytest.raises(LMNotConfiguredError):
        compile_users(ws, ["a", "b", "c"], aligner=aligner, agent_options=options)
    assert len(ws.lm.requests) - calls_before == 1  # b's profile call; c is never tried
    ws.lm.script = testing.persona_sensitive()
    again = compile_users(ws, ["a", "b", "c"], aligner=aligner, agent_options=options)
    assert again[0] == done and [r.status for r in again[1:]] == ["edited", "edited"]


def test_compile_all_with_a_missing_key_prints_one_line_once(tmp_path, hashing_embedder, history_file):
    workspace = Workspace(
        load_settings(store=str(tmp_path / "cli-store")), lm=ScriptedLM(failing_on("profile", NO_KEY)),
        embedder=hashing_embedder,
    )
    runner = CliRunner()
    try:
        assert runner.invoke(cli.cli, ["ingest", str(history_file)], obj=workspace).exit_code == 0
        result = runner.invoke(cli.cli, ["compile", "--all", "--labels", "politics,sports"], obj=workspace)
    finally:
        workspace.close()
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "To fix" not in result.output
    [error] = [line for line in result.output.splitlines() if "OPENAI_API_KEY" in line]
    assert error.startswith("Error: the LM call failed (LMNotConfiguredError: [openai/gpt-4o-mini] no API key")
    assert "check --lm" in error


def test_eval_stops_instead_of_counting_parse_failures(tmp_path, hashing_embedder):
    workspace = Workspace(
        load_settings(store=str(tmp_path / "cli-store")), lm=ScriptedLM(failing_on("answer", NO_KEY)),
        embedder=hashing_embedder,
    )
    try:
        result = CliRunner().invoke(
            cli.cli, ["eval", "--task", "news", "--users", "1", "--methods", "RAG", "--json"], obj=workspace
        )
    finally:
        workspace.close()
    assert result.exit_code == 1 and "Error: the LM call failed (LMNotConfiguredError" in result.output
    with pytest.raises(json.JSONDecodeError):  # no results table of all-failed answers
        json.loads(result.stdout)


# --- errors DSPy cannot tell from one bad call: a refused connection, an unknown provider ----------

REFUSED = LMServerError("[openai/x] litellm.InternalServerError: Connection error.\nmore detail", retry_after=0)


def test_compile_users_stops_after_three_users_in_a_row_fail(make_ws):
    ws = make_ws(failing_on("profile", REFUSED))
    for user in ("a", "b", "c", "d"):
        add_history(ws, user, ["SPORTS"] * 4)
    options = {"answer_format": LABELS, "use_actions": False}
    with pytest.raises(CompileStopped, match=r"stopped after 3 users in a row failed \(the last, 'c': LMServerError"):
        compile_users(ws, ["a", "b", "c", "d"], aligner=PersonaAlignment(), agent_options=options)
    assert not any("d match report" in r.user for r in ws.lm.requests)  # d is never tried


def test_a_success_between_failures_keeps_the_run_going(make_ws):
    failing = {"a", "c", "e"}
    base = testing.persona_sensitive()

    def script(request):
        if request.asks_for("profile") and any(f"{user} match report" in request.user for user in failing):
            raise REFUSED
        return base(request)

    ws = make_ws(script)
    users = ["a", "b", "c", "d", "e"]
    for user in users:
        add_history(ws, user, ["SPORTS"] * 4)
    options = {"answer_format": LABELS, "use_actions": False}
    records = compile_users(ws, users, aligner=PersonaAlignment(), agent_options=options)
    assert [r.status for r in records] == ["failed", "edited", "failed", "edited", "failed"]
    assert records[0].error == "LMServerError: [openai/x] litellm.InternalServerError: Connection error."


def test_compile_all_against_a_refused_connection_prints_one_line_and_no_traceback(
    tmp_path, hashing_embedder, history_file
):
    workspace = Workspace(
        load_settings(store=str(tmp_path / "cli-store")), lm=ScriptedLM(failing_on("profile", REFUSED)),
        embedder=hashing_embedder,
    )
    runner = CliRunner()
    try:
        runner.invoke(cli.cli, ["ingest", str(history_file)], obj=workspace)
        for user in ("bob", "carol"):  # three users
            history = tmp_path / f"{user}.jsonl"
            history.write_text(json.dumps({"user_id": user, "query": "q", "response": "sports"}) + "\n")
            runner.invoke(cli.cli, ["ingest", str(history)], obj=workspace)
        result = runner.invoke(cli.cli, ["compile", "--all", "--labels", "politics,sports"], obj=workspace)
    finally:
        workspace.close()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: stopped after 3 users in a row failed" in result.output
