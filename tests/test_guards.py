"""The checks that keep garbage LM output out of profiles and personas."""

from __future__ import annotations

import pytest

from personaagent.guards import generated_text_problem, repetition_problem, scaffolding_problem
from personaagent.persona import seed_persona_text


@pytest.mark.parametrize(
    "text",
    [
        "{profile}",
        "The user {profile} likes news.",
        "[[ ## profile ## ]]\nLikes news.",
        '{"profile": "Likes news."}',
        "Your output fields are: profile",
    ],
)
def test_scaffolding_is_caught(text):
    assert scaffolding_problem(text) is not None


def test_a_loop_is_caught_and_named():
    loop = "You are a Canadian man. Weird news." + " You can't have that." * 30
    assert repetition_problem(loop) == "repeats 'you can t have' 30 times"


@pytest.mark.parametrize(
    "text",
    [
        seed_persona_text(None),
        "You write mostly about politics and elections. You file court stories under CRIME, and you "
        "label stories about the presidency, the Senate and the House as POLITICS. You rarely cover "
        "entertainment. When a story is about a politician's personal life, you still call it POLITICS.",
        "Writes about food, travel and wellness; prefers practical guides over opinion pieces.",
    ],
)
def test_ordinary_prose_passes(text):
    assert generated_text_problem(text) is None
