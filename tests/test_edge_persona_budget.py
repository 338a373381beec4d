"""Issue 11, kind 6: one persona length budget (persona.MAX_PERSONA_CHARS) governs every way a
persona is made — seed, alignment edit, manual save, rollback — enforced in PersonaBook.add."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from personaagent import testing
from personaagent.agent import PersonaAgent
from personaagent.errors import PersonaTooLong, UnreadableFile
from personaagent.optimizers import PersonaAlignment
from personaagent.persona import MAX_PERSONA_CHARS, seed_persona_text
from personaagent.records import AnswerFormat, Persona, PersonaProvenance, Profile, StepSkipped

LABELS = AnswerFormat(kind="label", labels=("SPORTS", "POLITICS"))

#: A long, well-formed profile as a hosted model writes one: about 5,400 characters of sentences
#: (a distinct made-up word every few words, so the loop guard on profiles does not take it for
#: a repetition; no numbers, whose sentences a summary loses to drop_statistics).
_WORDS = [f"{c}{v}{z}" for c in "bdfgklmnpr" for v in "aeiou" for z in "stz"]
LONG_PROFILE = " ".join(f"Story {w} shows taste {w} for sport {w} and team {w} in season {w}." for w in _WORDS[:90])


def agent_with_history(ws) -> PersonaAgent:
    agent = PersonaAgent("u1", workspace=ws, answer_format=LABELS, use_actions=False)
    for day in range(5):
        agent.observe(f"match report number {day}", "SPORTS", timestamp=datetime(2024, 1, 1) + timedelta(days=day))
    return agent


def test_the_issue_case_a_long_profile_seeds_a_persona_within_the_budget_and_alignment_moves(make_ws):
    assert len(LONG_PROFILE) > 5000
    # The edit keeps all of the seed's content and adds a rule (the seed was 5,484 characters and
    # every such edit was rejected as "too long"): the seed leaves room for it within the budget.
    def keeps_the_seed(request):
        if request.asks_for("new_persona"):
            persona = request.user.split("[[ ## persona ## ]]")[1].split("[[ ## feedback")[0].strip()
            return {"new_persona": persona + "\nYou love SPORTS and answer SPORTS for match reports."}
        return testing.persona_sensitive(profile=LONG_PROFILE)(request)

    ws = make_ws(keeps_the_seed)
    agent = agent_with_history(ws).seeded()
    seed = agent.commit_persona()
    assert len(seed.text) <= MAX_PERSONA_CHARS // 2
    assert seed.text.endswith(".")  # cut at a sentence end, not mid-word
    assert ws.semantic.get("u1").text == LONG_PROFILE  # the stored profile itself is kept whole

    aligned = PersonaAlignment(num_recent=3).compile(agent)
    assert not [e for e in aligned.alignment_result.trace.events if isinstance(e, StepSkipped) and e.step == "edit"]
    assert aligned.alignment_result.status == "edited"
    current = aligned.commit_persona().text
    assert current.startswith(seed.text) and "love SPORTS" in current


def test_an_edit_over_the_budget_is_rejected_with_the_same_rule(make_ws):
    ws = make_ws(testing.persona_sensitive(new_persona="You love SPORTS. " + "You read every match report. " * 80))
    agent = agent_with_history(ws).seeded()
    agent.commit_persona()
    aligned = PersonaAlignment(num_recent=3).compile(agent)
    [skip] = [e for e in aligned.alignment_result.trace.events if isinstance(e, StepSkipped) and e.step == "edit"]
    assert f"the limit is {MAX_PERSONA_CHARS:,}" in skip.error


def test_a_manual_persona_over_the_budget_is_refused_and_nothing_is_saved(make_ws):
    ws = make_ws(testing.persona_sensitive())
    agent = agent_with_history(ws).with_persona("x" * (MAX_PERSONA_CHARS + 1))
    with pytest.raises(PersonaTooLong, match=f"the limit is {MAX_PERSONA_CHARS:,}"):
        agent.commit_persona()
    assert ws.personas.history("u1") == []
    with pytest.raises(PersonaTooLong):
        ws.personas.add("u1", "y" * (MAX_PERSONA_CHARS + 1), PersonaProvenance(source="manual"))
    exactly = ws.personas.add("u1", "z" * MAX_PERSONA_CHARS, PersonaProvenance(source="manual"))
    assert exactly.version == 1


def test_rolling_back_to_a_version_over_the_budget_is_refused_with_a_way_out(make_ws):
    ws = make_ws(testing.persona_sensitive())
    ws.personas.add("u1", "You like sports.", PersonaProvenance(source="manual"))
    # A version made before the budget existed: written directly, as an older release did.
    old = Persona(user_id="u1", version=2, parent_version=1, text="w " * 3000, provenance=PersonaProvenance(source="seed"))
    folder = ws.personas._user_folder("u1")
    (folder / "v2.json").write_text(old.model_dump_json(), encoding="utf-8")
    ws.personas.add("u1", "You like politics.", PersonaProvenance(source="manual"))
    with pytest.raises(PersonaTooLong, match="v2 cannot be current again.*roll back to a shorter version"):
        ws.personas.rollback("u1", 2)
    assert ws.personas.current("u1").version == 3  # nothing changed, nothing lost
    assert ws.personas.get("u1", 2).text == old.text  # the old version stays readable
    assert ws.personas.rollback("u1", 1).text == "You like sports."


def test_seed_text_fits_any_profile_and_keeps_a_short_one_whole():
    short = Profile(user_id="u1", text="Writes match reports.", num_interactions=3)
    assert seed_persona_text(short).endswith("What is known about the user: Writes match reports.")
    no_sentences = Profile(user_id="u1", text="word " * 1000, num_interactions=3)
    fitted = seed_persona_text(no_sentences)
    assert len(fitted) <= MAX_PERSONA_CHARS // 2 and fitted.endswith("word…")


def _edit_by_hand(path, **fields) -> bytes:
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**data, **fields}), encoding="utf-8")
    return path.read_bytes()


def test_the_issue_case_a_current_persona_edited_over_the_budget_is_refused_when_read(
    invoke, cli_workspace, history_file
):
    assert invoke("ingest", str(history_file)).exit_code == 0
    book = cli_workspace.personas
    book.add("alice", "You like politics.", PersonaProvenance(source="manual"))
    book.add("alice", "You like politics a lot.", PersonaProvenance(source="manual"))
    path = book._user_folder("alice") / "v2.json"
    data = _edit_by_hand(path, text="You like politics. " * 130)  # 2,470 characters
    expected = (
        f"Error: persona file {path} is unreadable: the persona is 2,469 characters; the limit is 2,000; "
        'shorten its "text", or make an earlier version current with `personaagent persona rollback alice VERSION`'
    )
    for args in (("ask", "alice", "Senate vote", "--labels", "politics,sports"), ("persona", "show", "alice")):
        result = invoke(*args)
        assert result.exit_code == 1
        assert result.stderr.splitlines() == [expected]  # not the model's multi-line context error, later
    compiled = invoke("compile", "alice", "--labels", "politics,sports")
    assert compiled.exit_code == 1 and f"alice: {expected.removeprefix('Error: ')}" in compiled.stderr.splitlines()
    # The version can still be looked at, and the way out the message names works.
    assert invoke("persona", "show", "alice", "--version", "2").stdout.startswith("You like politics. You like")
    assert invoke("persona", "history", "alice").exit_code == 0
    assert invoke("persona", "rollback", "alice", "1").exit_code == 0
    assert invoke("ask", "alice", "Senate vote", "--labels", "politics,sports").exit_code == 0
    assert path.read_bytes() == data  # nothing lost


def test_a_lone_persona_over_the_budget_is_refused_without_a_rollback_to_offer(make_ws):
    book = make_ws(testing.persona_sensitive()).personas
    book.add("u1", "You like sports.", PersonaProvenance(source="manual"))
    path = book._user_folder("u1") / "v1.json"
    _edit_by_hand(path, text="z" * (MAX_PERSONA_CHARS + 1))
    with pytest.raises(UnreadableFile) as exc:
        book.current("u1")
    assert str(exc.value) == (
        f'persona file {path} is unreadable: the persona is 2,001 characters; the limit is 2,000; shorten its "text"'
    )
    _edit_by_hand(path, text="z" * MAX_PERSONA_CHARS)  # exactly the budget is fine
    assert len(book.current("u1").text) == MAX_PERSONA_CHARS
