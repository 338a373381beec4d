"""Issue 11, kind 5: a label the LM writes in another form. The agent's answer parser, the
alignment metric and the evaluation metrics match labels with one function
(records.match_label); an answer that still fits no label is one `Error:` line in the CLI and an
UnparseableAnswer (also DSPy's AdapterParseError) in Python, never a traceback."""

from __future__ import annotations

import dspy
import pytest
from click.testing import CliRunner
from dspy.utils import DummyLM
from dspy.utils.exceptions import AdapterParseError

from personaagent import cli
from personaagent.agent import PersonaAgent
from personaagent.config import Settings, load_settings
from personaagent.errors import PersonaAgentError, UnparseableAnswer
from personaagent.evaluation.metrics import score_labels
from personaagent.optimizers import default_metric
from personaagent.records import AnswerFormat, match_label
from personaagent.testing import ScriptedLM
from personaagent.workspace import Workspace

LABELS = AnswerFormat(kind="label", labels=("politics", "sports"))
RATING = AnswerFormat(kind="rating", min_rating=1, max_rating=5)


@pytest.fixture
def ask_cli(tmp_path, hashing_embedder):
    """Run `personaagent ask u1 ...` against a store with one interaction and an LM whose every
    reply carries ``fields``."""
    workspaces = []

    def run(fields: dict, *args: str):
        workspace = Workspace(
            load_settings(store=str(tmp_path / "store")), lm=DummyLM({"": fields}), embedder=hashing_embedder
        )
        workspaces.append(workspace)
        PersonaAgent("u1", workspace=workspace).observe("Senate vote story", "politics")
        result = CliRunner().invoke(cli.cli, ["ask", "u1", "Budget bill story", *args], obj=workspace,
                                    catch_exceptions=False)
        return result

    yield run
    for workspace in workspaces:
        workspace.close()


def test_the_issue_case_politics_in_title_case_is_the_label_politics(ask_cli):
    result = ask_cli({"answer": "Politics", "tool_name": "finish", "tool_input": ""}, "--labels", "politics,sports")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "politics"


def test_a_label_outside_the_set_is_one_error_line_not_a_traceback(ask_cli):
    result = ask_cli({"answer": "Weather", "tool_name": "finish", "tool_input": ""}, "--labels", "politics,sports")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: the model gave 'Weather', not one of the labels politics, sports")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_rating_that_is_no_number_is_one_error_line(ask_cli):
    result = ask_cli({"answer": "five stars", "tool_name": "finish", "tool_input": ""}, "--rating", "1", "5")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the model gave 'five stars', not a rating from 1 to 5")
    assert result.stderr.count("\n") == 1


def test_a_tool_choice_that_does_not_parse_is_one_error_line(ask_cli):
    result = ask_cli({"answer": "politics", "tool_name": "rm -rf /", "tool_input": "x"}, "--labels", "politics,sports")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the model's tool choice does not parse")
    assert result.stderr.count("\n") == 1


@pytest.fixture
def agent_answering(tmp_path, hashing_embedder):
    workspaces = []

    def build(answer: str, answer_format: AnswerFormat = LABELS) -> PersonaAgent:
        lm = ScriptedLM(lambda request: {"answer": answer})
        workspace = Workspace(Settings(home=tmp_path / "home", store=":memory:"), lm=lm, embedder=hashing_embedder)
        workspaces.append(workspace)
        agent = PersonaAgent("u1", workspace=workspace, answer_format=answer_format, use_actions=False)
        agent.observe("Senate vote story", "politics")
        return agent

    yield build
    for workspace in workspaces:
        workspace.close()


@pytest.mark.parametrize(
    "written", ["Politics", "POLITICS", " politics ", "politics.", "'Politics'", '"politics"', "**Politics**",
                "Politics\n", "The answer is politics"],
)
def test_every_form_the_metric_accepts_is_parsed_as_the_label(agent_answering, written):
    agent = agent_answering(written)
    answer = agent("Budget bill story").answer
    assert answer == "politics"
    # ... and the metrics agree: the alignment metric and the evaluation metric score it right.
    gold = dspy.Example(query="Budget bill story", answer="politics")
    assert default_metric(LABELS)(gold, dspy.Prediction(answer=written)).score == 1.0
    assert score_labels(["politics"], [written], LABELS.labels).metrics["accuracy"] == 1.0


def test_an_answer_outside_the_set_raises_a_typed_error_in_python(agent_answering):
    agent = agent_answering("Weather")
    with pytest.raises(UnparseableAnswer) as caught:
        agent("Budget bill story")
    assert isinstance(caught.value, PersonaAgentError) and isinstance(caught.value, AdapterParseError)
    assert "Weather" in caught.value.lm_response
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("written", ["nan", "inf", "a lot"])
def test_a_rating_that_is_not_a_finite_number_raises_the_typed_error(agent_answering, written):
    with pytest.raises(UnparseableAnswer, match="rating"):
        agent_answering(written, RATING)("Budget bill story")


def test_a_truth_stored_in_another_case_scores_like_the_label():
    # The user's file said "Politics"; the answer format's label is "politics".
    metric = default_metric(LABELS)
    gold = dspy.Example(query="q", answer="Politics")
    assert metric(gold, dspy.Prediction(answer="politics")).score == 1.0
    assert metric(gold, dspy.Prediction(answer="sports")).score == 0.0


def test_match_label_prefers_the_exact_label_then_the_longest_phrase():
    assert match_label("News", ("news", "News")) == "News"
    assert match_label("world news", ("WORLD", "WORLD NEWS")) == "WORLD NEWS"
    assert match_label("weather", ("politics", "sports")) is None
