"""The LaMP file reader, on tiny hand-written files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personaagent.errors import InvalidRecord
from personaagent.evaluation.lamp import read_lamp

LAMP2N_INPUT = (
    "Which category does this article relate to among the following categories? Just answer with the "
    "category name without further explanation. categories: [travel, politics, food & drink, sports] "
    "article: {text}"
)


def _write(path: Path, payload: object) -> Path:
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def _lamp2n(tmp_path: Path, questions: list) -> tuple[Path, Path]:
    golds = {"task": "LaMP_2N", "golds": [{"id": "100", "output": "politics"}, {"id": "101", "output": "sports"}]}
    return _write(tmp_path / "questions.json", questions), _write(tmp_path / "outputs.json", golds)


GOOD_2N = [
    {
        "id": "100",
        "input": LAMP2N_INPUT.format(text="The senate passed the bill."),
        "profile": [
            {"id": "1000", "text": "Congress votes today.", "title": "Vote", "category": "politics"},
            {"id": "1001", "text": "Best pasta in Rome.", "title": "Pasta", "category": "food & drink"},
        ],
    },
    {
        "id": "101",
        "input": LAMP2N_INPUT.format(text="The final ended 2-1."),
        "profile": [{"id": "1010", "text": "A new stadium opens.", "category": "sports"}],
    },
]


def test_read_lamp2n(tmp_path: Path) -> None:
    data = read_lamp(*_lamp2n(tmp_path, GOOD_2N))
    assert data.spec.name == "LaMP-2N"
    assert data.spec.kind == "label"
    assert data.spec.labels == ("food & drink", "politics", "sports", "travel")
    assert data.skipped == []
    first, second = data.examples
    assert (first.user_id, first.query, first.gold) == ("100", "The senate passed the bill.", "politics")
    assert [(p.query, p.response) for p in first.profile] == [
        ("Congress votes today.", "politics"),
        ("Best pasta in Rome.", "food & drink"),
    ]
    assert first.profile[0].metadata == {"profile_id": "1000", "title": "Vote"}
    assert all(p.user_id == "100" for p in first.profile)
    assert first.metadata["input"] == GOOD_2N[0]["input"]
    assert second.gold == "sports" and len(second.profile) == 1


def test_read_lamp3(tmp_path: Path) -> None:
    questions = [
        {
            "id": "7",
            "input": "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, "
            "or 5 without further explanation. review: Loved it, would buy again.",
            "profile": [{"id": "70", "text": "Terrible.", "score": "1"}, {"id": "71", "text": "Fine.", "score": 3}],
        }
    ]
    data = read_lamp(
        _write(tmp_path / "q.json", questions),
        _write(tmp_path / "o.json", {"task": "LaMP_3", "golds": [{"id": "7", "output": "5"}]}),
    )
    assert data.spec.kind == "rating" and data.spec.rating_range == (1.0, 5.0)
    (example,) = data.examples
    assert example.query == "Loved it, would buy again."
    assert example.gold == "5"
    assert [p.response for p in example.profile] == ["1", "3"]


def test_read_lamp2m_detects_variant(tmp_path: Path) -> None:
    questions = [
        {
            "id": "9",
            "input": "Which tag does this movie relate to among the following tags? tags: [sci-fi, comedy] "
            "description: A robot learns to love.",
            "profile": [{"id": "90", "description": "Aliens land.", "tag": "sci-fi"}],
        }
    ]
    data = read_lamp(
        _write(tmp_path / "q.json", questions),
        _write(tmp_path / "o.json", {"task": "LaMP_2", "golds": [{"id": "9", "output": "sci-fi"}]}),
    )
    assert data.spec.name == "LaMP-2M"
    assert data.spec.labels == ("comedy", "sci-fi")
    assert data.examples[0].query == "A robot learns to love."


def test_read_lamp_strict_names_file_and_question(tmp_path: Path) -> None:
    bad = [GOOD_2N[0], {"id": "101", "input": "article: x"}]  # question 2 has no profile
    questions, outputs = _lamp2n(tmp_path, bad)
    with pytest.raises(InvalidRecord, match=r"questions\.json: question 2: missing field 'profile'"):
        read_lamp(questions, outputs)


def test_read_lamp_lenient_skips_and_reports(tmp_path: Path) -> None:
    bad = [
        GOOD_2N[0],
        {"id": "101", "input": "article: x", "profile": [{"id": "1", "text": "no label"}]},
        {"id": "555", "input": "article: y", "profile": []},  # no gold for this id
    ]
    data = read_lamp(*_lamp2n(tmp_path, bad), strict=False)
    assert [e.user_id for e in data.examples] == ["100"]
    assert [(s.element, s.reason) for s in data.skipped] == [
        (2, "profile item 1 needs 'text' and 'category'"),
        (3, "no gold output for id '555'"),
    ]
    assert str(data.skipped[1]) == "element 3: no gold output for id '555'"  # a question, not a line


def test_read_lamp_rejects_malformed_files(tmp_path: Path) -> None:
    questions, outputs = _lamp2n(tmp_path, GOOD_2N)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidRecord, match="broken.json: not valid JSON"):
        read_lamp(broken, outputs)
    with pytest.raises(InvalidRecord, match="expected a JSON list"):
        read_lamp(_write(tmp_path / "obj.json", {"id": 1}), outputs)
    with pytest.raises(InvalidRecord, match="'golds' list"):
        read_lamp(questions, _write(tmp_path / "nogolds.json", {"task": "x"}))
    with pytest.raises(InvalidRecord, match="missing.json"):
        read_lamp(tmp_path / "missing.json", outputs)
