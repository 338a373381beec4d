"""An answer format that cannot work (a rating range that is not two finite numbers, lowest
first; a label list with a label twice, even up to case and spacing) is refused where it is
given: one plain `Error:` line naming the option and what to give instead, in the CLI; a
ValidationError naming the rule, in Python (and so a 422 in the HTTP API)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from personaagent.records import AnswerFormat

RATING_FIX = "give two numbers, the lowest first, e.g. --rating 1 5"

BAD_OPTIONS = [
    pytest.param(("--rating", "nan", "5"), f"--rating: a rating range is two finite numbers, not nan and 5; {RATING_FIX}",
                 id="rating-nan"),
    pytest.param(("--rating", "1", "inf"), f"--rating: a rating range is two finite numbers, not 1 and inf; {RATING_FIX}",
                 id="rating-inf"),
    pytest.param(("--rating", "-inf", "0"), f"--rating: a rating range is two finite numbers, not -inf and 0; {RATING_FIX}",
                 id="rating-minus-inf"),
    pytest.param(("--rating", "1", "1e999"), f"--rating: a rating range is two finite numbers, not 1 and inf; {RATING_FIX}",
                 id="rating-overflows-to-inf"),
    pytest.param(("--rating", "5", "1"), f"--rating: the lowest rating (5) must be below the highest (1); {RATING_FIX}",
                 id="rating-min-above-max"),
    pytest.param(("--rating", "3", "3"), f"--rating: the lowest rating (3) must be below the highest (3); {RATING_FIX}",
                 id="rating-empty-range"),
    pytest.param(("--labels", "politics,politics"),
                 "--labels: the label 'politics' is given twice; give each label once, e.g. --labels politics,sports",
                 id="labels-twice"),
    pytest.param(("--labels", "politics,sports,politics"),
                 "--labels: the label 'politics' is given twice; give each label once, e.g. --labels politics,sports",
                 id="labels-twice-apart"),
    pytest.param(("--labels", "Politics, politics"),
                 "--labels: the labels 'Politics' and 'politics' differ only in case or spacing, and answers are "
                 "matched ignoring both; give each label once, e.g. --labels politics,sports",
                 id="labels-differ-in-case"),
    pytest.param(("--labels", "world news,world  news"),
                 "--labels: the labels 'world news' and 'world  news' differ only in case or spacing, and answers are "
                 "matched ignoring both; give each label once, e.g. --labels politics,sports",
                 id="labels-differ-in-spacing"),
    pytest.param(("--labels", "politics"),
                 "--labels: a label answer format needs at least two labels, e.g. --labels politics,sports",
                 id="labels-one"),
    pytest.param(("--labels", " , ,"),
                 "--labels: a label answer format needs at least two labels, e.g. --labels politics,sports",
                 id="labels-none"),
]


@pytest.mark.parametrize("command", [("ask", "alice", "Senate vote"), ("compile", "alice")], ids=["ask", "compile"])
@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_an_answer_format_option_that_cannot_work_is_one_plain_error_line(
    invoke, history_file: Path, command: tuple[str, ...], options: tuple[str, ...], message: str
) -> None:
    assert invoke("ingest", str(history_file)).exit_code == 0
    result = invoke(*command, *options)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"Error: {message}"]


def test_a_workable_answer_format_option_is_still_taken(invoke, history_file: Path) -> None:
    assert invoke("ingest", str(history_file)).exit_code == 0
    labels = invoke("ask", "alice", "Senate vote", "--labels", "politics, sports ,,world news")
    assert labels.exit_code == 0, labels.output
    # The scripted LM answers "sports": the range was taken, and the answer is checked against it.
    rating = invoke("ask", "alice", "Senate vote", "--rating", "-1", "1.5")
    assert rating.stderr.startswith("Error: the model gave 'sports', not a rating from -1 to 1.5")


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"kind": "rating", "min_rating": math.nan}, "a rating range is two finite numbers, not nan and 5"),
        ({"kind": "rating", "max_rating": math.inf}, "a rating range is two finite numbers, not 1 and inf"),
        ({"kind": "rating", "min_rating": 5, "max_rating": 1}, "the lowest rating (5) must be below the highest (1)"),
        ({"kind": "label", "labels": ["a", "b", "a"]}, "the label 'a' is given twice"),
        ({"kind": "label", "labels": ["SPORTS", "sports"]}, "the labels 'SPORTS' and 'sports' differ only in case"),
        ({"kind": "label", "labels": ["a", " "]}, "a label is blank"),
    ],
    ids=["nan", "inf", "min-above-max", "label-twice", "label-case", "label-blank"],
)
def test_the_record_refuses_the_same_formats_from_python_or_json(fields: dict, rule: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(rule)):
        AnswerFormat(**fields)
    with pytest.raises(ValidationError, match=re.escape(rule)):  # as the HTTP API and job files give it
        AnswerFormat.model_validate_json(json.dumps(fields))
