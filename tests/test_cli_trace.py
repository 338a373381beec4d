"""`trace list/show/report` after a compile, and the HTML report in a headless browser."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import CLI_LM_FIELDS

CHROMIUM = "/usr/bin/chromium"


def test_list_shows_the_run(invoke, compiled_run: str) -> None:
    table = invoke("trace", "list")
    assert table.exit_code == 0, table.output
    assert compiled_run in table.stdout and "alice" in table.stdout and "edited" in table.stdout
    [run] = json.loads(invoke("trace", "list", "--json").stdout)
    assert run["run_id"] == compiled_run
    [user] = run["users"]
    assert user["user_id"] == "alice" and user["status"] == "edited" and user["persona_version"] == 2
    # Scored on all 5 interactions (3 batch + 2 held out): only the sports one was right before.
    assert user["score_initial"] == 0.2 and user["score_final"] == 0.8


def test_list_without_runs(invoke) -> None:
    result = invoke("trace", "list")
    assert result.exit_code == 0 and "no alignment runs yet" in result.stderr
    assert json.loads(invoke("trace", "list", "--json").stdout) == []


def test_show_walks_through_the_iteration(invoke, compiled_run: str) -> None:
    result = invoke("trace", "show", compiled_run)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"User 'alice' in run {compiled_run}" in text
    assert "Iteration 1" in text
    assert "[0.00] answered 'sports', user said 'politics'" in text
    assert "critique: This user answers politics for \"" + CLI_LM_FIELDS["item_kind"] + "\", not sports." in text
    assert "gradient (3 critiques):\n      1. This user answers politics for " in text
    assert "persona diff:" in text and "+" + CLI_LM_FIELDS["new_persona"] in text
    assert "gate: accepted (score 0.800 > 0.200); score 0.200 -> 0.800" in text
    assert "finished: edited, score 0.200 -> 0.800, stored persona v2, 1 iteration(s) with critiques" in text
    assert "stored as persona v2 (parent v1)" in text
    assert "LM calls" in text
    assert invoke("trace", "show", compiled_run, "--user", "alice").stdout == text


def test_show_a_run_with_nothing_to_learn_says_why_no_iteration_counts(invoke, tmp_path: Path) -> None:
    # Every simulated answer right: "Iteration 1" lists them, and no critique was written.
    history = tmp_path / "sports.jsonl"
    history.write_text("".join(
        json.dumps({"user_id": "bob", "query": f"Cup final {n}", "response": "sports",
                    "timestamp": f"2024-01-0{n}T00:00:00Z"}) + "\n" for n in range(1, 5)
    ), encoding="utf-8")
    assert invoke("ingest", str(history)).exit_code == 0
    run_id = json.loads(invoke("compile", "bob", "--labels", "politics,sports", "--json").stdout)["run_id"]
    text = invoke("trace", "show", run_id).stdout
    assert "Iteration 1" in text and "[1.00] answered 'sports'" in text and "critique:" not in text
    assert "finished: unchanged, score 1.000 -> 1.000, no persona stored, 0 iteration(s) with critiques" in text


def test_show_unknown_run_or_user(invoke, compiled_run: str) -> None:
    no_run = invoke("trace", "show", "nope")
    assert no_run.exit_code == 1 and no_run.stderr.startswith("Error: no trace run 'nope'")
    no_user = invoke("trace", "show", compiled_run, "--user", "mallory")
    assert no_user.exit_code == 1 and "has no trace for user 'mallory'" in no_user.stderr


def test_report_writes_self_contained_html(invoke, compiled_run: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = invoke("trace", "report", compiled_run, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    html = out.read_text(encoding="utf-8")
    assert '<svg id="score-plot"' in html and "<polyline" in html
    assert "+" + CLI_LM_FIELDS["new_persona"] in html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_report_escapes_user_text(invoke, tmp_path: Path) -> None:
    history = tmp_path / "xss.jsonl"
    evil = "<script>alert(1)</script>"
    history.write_text(
        "".join(json.dumps({"user_id": evil, "query": f"{evil} {n}", "response": "politics"}) + "\n" for n in range(3)),
        encoding="utf-8",
    )
    invoke("ingest", str(history))
    run_id = json.loads(invoke("compile", evil, "--json").stdout)["run_id"]
    out = tmp_path / "xss.html"
    invoke("trace", "report", run_id, "-o", str(out))
    html = out.read_text(encoding="utf-8")
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def _chromium() -> str:
    """The headless browser (.ci/run installs it); the test skips where it is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return CHROMIUM


def test_report_renders_in_headless_chromium(invoke, compiled_run: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    invoke("trace", "report", compiled_run, "-o", str(out))
    dom = subprocess.run(
        [
            _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", out.as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert '<svg id="score-plot"' in dom and "<polyline" in dom and "<circle" in dom
    assert 'class="diff"' in dom and CLI_LM_FIELDS["new_persona"] in dom
    assert "Iteration 1" in dom and "accepted" in dom


def test_a_bug_is_not_disguised_as_a_user_mistake(invoke, monkeypatch) -> None:
    # Only personaagent's own errors (and invalid records, missing files) become "Error: ...";
    # a KeyError from a bug keeps its traceback instead of reading like a typo of the user's.
    from personaagent.traces import TraceReader

    monkeypatch.setattr(TraceReader, "summaries", lambda self: {}["internal"])
    with pytest.raises(KeyError, match="internal"):
        invoke("trace", "list")
    unknown = invoke("trace", "show", "no-such-run")
    assert unknown.exit_code == 1 and unknown.stderr.startswith("Error: no trace run 'no-such-run'")


def test_a_blank_query_is_a_one_line_error(invoke, compiled_run: str) -> None:
    result = invoke("ask", "alice", "   ")
    assert result.exit_code == 1 and result.stderr == "Error: query must be a non-empty string\n"


@pytest.mark.parametrize("run_id", ["", ".", "..", "/etc", "../traces", "a/b"])
def test_a_run_id_that_is_a_path_is_refused(invoke, compiled_run: str, run_id: str) -> None:
    for command in (("trace", "show", run_id), ("trace", "report", run_id)):
        result = invoke(*command)
        assert result.exit_code == 1 and "is no trace run id" in result.stderr


def test_a_damaged_trace_line_costs_that_event_only(invoke, compiled_run: str, cli_workspace) -> None:
    [path] = list((cli_workspace.settings.traces_dir / compiled_run).glob("*.jsonl"))
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([lines[0], b"\xff\xfe not UTF-8", *lines[1:]]))
    for command in (("trace", "list"), ("trace", "show", compiled_run)):
        result = invoke(*command)
        assert result.exit_code == 0 and "Traceback" not in result.output
        assert "unreadable trace event skipped" in result.stderr
    assert "finished: edited" in invoke("trace", "show", compiled_run).stdout
