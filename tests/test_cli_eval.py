"""`personaagent eval` through click's runner, on the committed samples with a scripted LM."""

from __future__ import annotations

import json

from personaagent import cli
from click.testing import CliRunner


def test_eval_prints_the_table_and_writes_results(cli_workspace, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli.cli,
        ["eval", "--task", "ratings", "--users", "2", "--methods", "baselines,RAG", "--out", str(out)],
        obj=cli_workspace,
    )
    assert result.exit_code == 0, result.output
    assert "| ratings | user mean | 2 | 6 |" in result.output
    assert "| ratings | RAG | 2 | 6 |" in result.output
    assert f"Results and traces: {out}" in result.output
    saved = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in saved][-1] == "RAG"


def test_eval_json_output(cli_workspace, tmp_path):
    result = CliRunner().invoke(
        cli.cli,
        ["eval", "--task", "news", "--users", "1", "--methods", "baselines", "--out", str(tmp_path), "--json"],
        obj=cli_workspace,
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output[result.output.index("{"):])
    assert {r["method"] for r in payload["results"]} == {"global majority", "user majority", "kNN vote (k=5)"}


def test_eval_rejects_an_unknown_method_and_task(cli_workspace, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli.cli, ["eval", "--task", "news", "--methods", "GPT9", "--out", str(tmp_path)], obj=cli_workspace)
    assert result.exit_code == 1
    assert "Error: unknown method(s) GPT9" in result.output
    result = runner.invoke(cli.cli, ["eval", "--task", "lamp9"], obj=cli_workspace)
    assert result.exit_code == 2 and "Invalid value for '--task'" in result.output
    for nothing in ("", " , "):  # was an empty table, a results folder and exit 0
        out = tmp_path / "none"
        result = runner.invoke(cli.cli, ["eval", "--task", "news", "--methods", nothing, "--out", str(out)], obj=cli_workspace)
        assert result.exit_code == 2 and "name at least one method" in result.output and not out.exists()


def test_eval_on_real_lamp_files(cli_workspace, tmp_path):
    from test_evaluation_lamp import GOOD_2N, _lamp2n

    questions, outputs = _lamp2n(tmp_path, GOOD_2N)
    result = CliRunner().invoke(
        cli.cli,
        ["eval", "--lamp", str(questions), str(outputs), "--methods", "baselines", "--out", str(tmp_path / "o")],
        obj=cli_workspace,
    )
    assert result.exit_code == 0, result.output
    # Each LaMP question is its own user. Question 101's profile is all sports (right); 100's is a
    # politics / food & drink tie, which goes to the most recent label, food & drink (wrong).
    assert "| LaMP-2N | user majority | 2 | 2 | 0.500 |" in result.output


def test_eval_needs_exactly_one_source(cli_workspace, tmp_path):
    result = CliRunner().invoke(cli.cli, ["eval"], obj=cli_workspace)
    assert result.exit_code == 2 and "Give --task or --lamp" in result.output
