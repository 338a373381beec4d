"""PersonaAgent: retrieval stays within the user, the persona conditions the predictors, tools are
called and recorded, bad input gets a clear error, state survives a restart."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from personaagent.agent import PersonaAgent
from personaagent.config import Settings
from personaagent.errors import EmptyHistory, InvalidRecord, PersonaConflict, QueryTooLong, UnknownUser
from personaagent.records import AnswerFormat, ToolCall
from personaagent.testing import ScriptedLM, persona_sensitive
from personaagent.workspace import Workspace

LABELS = AnswerFormat(kind="label", labels=("SPORTS", "POLITICS", "FOOD"))


def script(request):
    if request.asks_for("tool_name"):
        return {"tool_name": "memory_search", "tool_input": "recipes"}
    if request.asks_for("answer"):
        return {"answer": "FOOD"}
    if request.asks_for("profile"):
        return {"profile": "Writes about cooking."}
    raise AssertionError(request.output_fields)


@pytest.fixture
def ws(tmp_path, hashing_embedder):
    workspace = Workspace(
        Settings(home=tmp_path / "home", store=str(tmp_path / "store")), lm=ScriptedLM(script), embedder=hashing_embedder
    )
    yield workspace
    workspace.close()


def fill(ws, user_id, items):
    agent = PersonaAgent(user_id, workspace=ws, answer_format=LABELS)
    for day, (query, label) in enumerate(items):
        agent.observe(query, label, timestamp=datetime(2022, 1, 1) + timedelta(days=day))
    return agent


def test_answer_uses_only_this_users_memories_and_records_the_tool_call(ws):
    alice = fill(ws, "alice", [("pasta recipes for winter", "FOOD"), ("election night results", "POLITICS")])
    fill(ws, "bob", [("pasta recipes for winter nights", "SPORTS"), ("bob secret note", "SPORTS")])
    prediction = alice("pasta recipes for winter")
    assert prediction.answer == "FOOD"
    assert {m.user_id for m in prediction.retrieved} == {"alice"}
    assert prediction.retrieved[0].interaction.query == "pasta recipes for winter"
    assert prediction.used_tools and isinstance(prediction.used_tools[0], ToolCall)
    assert prediction.used_tools[0].name == "memory_search"
    assert '"pasta recipes for winter" => "FOOD"' in prediction.used_tools[0].observation
    assert "bob" not in prediction.used_tools[0].observation and "SPORTS" not in prediction.used_tools[0].observation


def test_persona_is_the_instructions_of_both_predictors(ws):
    plain = fill(ws, "alice", [("pasta", "FOOD")])
    agent = plain.with_persona("You adore Italian cooking.")
    assert "Italian" not in plain.persona_text  # with_persona returns a copy
    agent("what should I read?")
    systems = [r.system for r in ws.lm.requests]
    assert len(systems) == 2  # tool choice, then the answer
    assert all("You adore Italian cooking." in system for system in systems)
    assert "You adore Italian cooking." in agent.respond.signature.instructions
    assert "You adore Italian cooking." in agent.act.choose.signature.instructions
    assert agent.persona_text == "You adore Italian cooking."


def test_the_seed_comes_from_the_profile_and_is_stored_only_when_committed(ws):
    agent = fill(ws, "alice", [("pasta", "FOOD"), ("pizza", "FOOD")])
    seeded = agent.seeded()
    assert "Writes about cooking." in seeded.persona_text
    assert seeded.persona_version is None and agent.stored_persona() is None
    persona = seeded.commit_persona()
    assert persona.version == 1 and persona.provenance.source == "seed" and persona.text == seeded.persona_text
    assert seeded.persona_version == 1 and agent.stored_persona() == persona
    again = agent.seeded()  # the stored persona now: no second profile call
    assert again.persona_text == persona.text and again.persona_version == 1
    assert sum(r.asks_for("profile") for r in ws.lm.requests) == 1


def test_ablations_change_what_the_agent_does(ws):
    fill(ws, "alice", [("pasta", "FOOD")])
    no_memory = PersonaAgent("alice", workspace=ws, answer_format=LABELS, use_memory=False, use_actions=False)
    prediction = no_memory("pasta")
    assert prediction.retrieved == [] and prediction.used_tools == []
    assert "memory_search" not in no_memory.act.tool_names
    generic = PersonaAgent("alice", workspace=ws, answer_format=LABELS, use_persona=False)
    assert generic.persona_text == "You are a helpful assistant."


def test_persona_and_memories_survive_a_restart(tmp_path, hashing_embedder):
    settings = Settings(home=tmp_path / "home", store=str(tmp_path / "store"))
    with Workspace(settings, lm=ScriptedLM(script), embedder=hashing_embedder) as first:
        agent = fill(first, "alice", [("pasta", "FOOD"), ("pizza", "FOOD")])
        agent.with_persona("You adore Italian cooking.").commit_persona()
    with Workspace(settings, lm=ScriptedLM(script), embedder=hashing_embedder) as second:
        again = PersonaAgent.for_user("alice", workspace=second, answer_format=LABELS)
        assert again.persona_text == "You adore Italian cooking."
        assert [m.interaction.query for m in second.episodic.history("alice")] == ["pasta", "pizza"]


def test_bad_input_gets_clear_errors(ws):
    with pytest.raises(UnknownUser, match="no memories or persona for user 'nobody'"):
        PersonaAgent.for_user("nobody", workspace=ws)
    with pytest.raises(EmptyHistory, match="has no interactions"):
        PersonaAgent("empty", workspace=ws).seeded()
    agent = fill(ws, "alice", [("pasta", "FOOD")])
    with pytest.raises(InvalidRecord, match="query"):
        agent.observe("   ", "FOOD")
    with pytest.raises(InvalidRecord, match="must not be empty"):
        PersonaAgent("", workspace=ws)
    with pytest.raises(QueryTooLong, match="Shorten the query"):
        agent("x" * (ws.settings.max_query_chars + 1))
    assert ws.lm.requests == []  # nothing reached the LM


def test_rating_answers_are_clamped_to_the_scale(tmp_path, hashing_embedder):
    lm = ScriptedLM(lambda r: {"answer": 9.0})
    with Workspace(Settings(home=tmp_path, store=":memory:"), lm=lm, embedder=hashing_embedder) as ws:
        agent = PersonaAgent("u", workspace=ws, answer_format=AnswerFormat(kind="rating"), use_actions=False)
        agent.observe("Heat (1995)", "4.5")
        assert agent("Ronin (1998)").answer == 5.0


@pytest.mark.parametrize("garbage", ["{profile}", "[[ ## profile ## ]]", '{"profile": "x"}', "User."])
def test_a_garbage_profile_is_not_saved_and_does_not_reach_the_persona(tmp_path, hashing_embedder, garbage):
    lm = ScriptedLM(lambda r: {"profile": garbage})
    with Workspace(Settings(home=tmp_path, store=":memory:"), lm=lm, embedder=hashing_embedder) as ws:
        agent = fill(ws, "alice", [("pasta", "FOOD")])
        persona = agent.seeded().commit_persona()
        assert garbage not in persona.text
        assert ws.semantic.get("alice") is None


def test_a_context_overflow_becomes_query_too_long(tmp_path, hashing_embedder):
    from dspy.utils.exceptions import ContextWindowExceededError

    def overflow(request):
        raise ContextWindowExceededError(model="local", message="prompt 3000 tokens > 2048")

    with Workspace(Settings(home=tmp_path, store=":memory:"), lm=ScriptedLM(overflow), embedder=hashing_embedder) as ws:
        agent = fill(ws, "alice", [("pasta", "FOOD")])
        with pytest.raises(QueryTooLong, match="does not fit the model's context"):
            agent("a question")


def test_retrieved_memories_are_demonstrations_only_where_the_model_needs_them(ws):
    agent = fill(ws, "alice", [("pasta recipes for winter", "FOOD"), ("election night", "POLITICS")])
    agent.observe("a note to self", "")  # a note has no response: not a demonstration
    assert agent.memories_as == "context"  # a fake LM is no packaged model: context only
    agent("pasta recipes")
    answer_call = ws.lm.history[-1]["messages"]
    assert len(answer_call) == 2  # system + the query: no demonstration turns
    assert "pasta recipes for winter" in answer_call[-1]["content"]  # the memories are context

    demo_agent = PersonaAgent("alice", workspace=ws, answer_format=LABELS, memories_as="demos")
    demo_agent("pasta recipes")
    answer_call = ws.lm.history[-1]["messages"]
    turns = [m["content"] for m in answer_call[1:-1]]  # between the system prompt and the query
    assert any("pasta recipes for winter" in turn for turn in turns)
    assert any("FOOD" in turn for turn in turns)
    assert not any("a note to self" in turn for turn in turns)
    assert "pasta recipes for winter" in answer_call[-3]["content"]  # the most similar is the last demo


def _imitating_script(request):
    """Without demonstrated turns, follow a persona that states a habit ("... under SPORTS")."""
    if request.asks_for("tool_name"):
        return {"tool_name": "finish", "tool_input": ""}
    return {"answer": "SPORTS" if "under SPORTS" in request.system else "POLITICS"}


@pytest.mark.parametrize(("memories_as", "steered"), [("context", True), ("demos", False)])
def test_a_persona_steers_the_answer_only_when_memories_are_not_demonstrations(
    tmp_path, hashing_embedder, memories_as, steered
):
    class Imitating(ScriptedLM):
        def __call__(self, prompt=None, messages=None, **kwargs):
            turns = (messages or [])[1:-1]
            demonstrated = [t["content"] for t in turns if t["role"] == "assistant"]
            if demonstrated:  # few-shot turns win over the system prompt, as measured on Qwen 1.5B
                self.requests.append(None)
                return [demonstrated[-1]]
            return super().__call__(prompt=prompt, messages=messages, **kwargs)

    lm = Imitating(_imitating_script)
    with Workspace(Settings(home=tmp_path, store=":memory:"), lm=lm, embedder=hashing_embedder) as ws:
        fill(ws, "alice", [(f"Cup final report {i}", "POLITICS") for i in range(3)])
        agent = PersonaAgent("alice", workspace=ws, answer_format=LABELS, memories_as=memories_as)
        habit = "You are alice's assistant. You file match reports under SPORTS, even about politicians."
        before = agent("Cup final report").answer
        after = agent.with_persona(habit)("Cup final report").answer if hasattr(agent, "with_persona") else None
        if after is None:
            agent.set_persona(habit)
            after = agent("Cup final report").answer
    assert before == "POLITICS"
    assert after == ("SPORTS" if steered else "POLITICS")


def test_a_users_own_tool_is_offered_chosen_and_recorded(tmp_path, hashing_embedder):
    def weather(city: str) -> str:
        """Today's weather in a city."""
        return f"sunny in {city}"

    def broken(text: str) -> str:
        """A tool that always fails."""
        raise RuntimeError("backend down")

    choices = iter(["weather", "broken"])

    def script(request):
        if request.asks_for("tool_name"):
            assert "weather: Today's weather in a city." in request.user
            return {"tool_name": next(choices), "tool_input": "Lisbon"}
        return {"answer": "FOOD"}

    with Workspace(Settings(home=tmp_path, store=":memory:"), lm=ScriptedLM(script), embedder=hashing_embedder) as ws:
        agent = PersonaAgent("alice", workspace=ws, answer_format=LABELS, tools=[weather, broken], max_tool_steps=2)
        prediction = agent("what should I cook tonight?")
    first, second = prediction.used_tools
    assert (first.name, first.tool_input, first.observation) == ("weather", "Lisbon", "sunny in Lisbon")
    assert second.name == "broken" and "backend down" in second.observation  # recorded, answer still given
    assert prediction.answer == "FOOD"


# --- the persona is one piece of program state (issue 10, fault 1) ---------------------------------

SPORTS = "You love SPORTS and answer SPORTS for match reports."


def test_dspy_state_round_trip_carries_the_persona_and_its_version(tmp_path, hashing_embedder):
    lm = ScriptedLM(persona_sensitive())
    with Workspace(Settings(home=tmp_path, store=":memory:"), lm=lm, embedder=hashing_embedder) as ws:
        a = PersonaAgent("u1", workspace=ws, answer_format=LABELS, use_actions=False).with_persona(SPORTS)
        a.commit_persona()
        b = PersonaAgent("u1", workspace=ws, answer_format=LABELS, use_actions=False)
        b.load_state(a.dump_state())
        assert b.persona_text == a.persona_text == SPORTS
        assert b.persona_version == a.persona_version == 1
        assert b("match report").answer == a("match report").answer == "SPORTS"
        a2 = a.with_persona(SPORTS + " Always.")
        b.load_state(a2.dump_state())  # an uncommitted edit of v1 travels as one
        assert b.persona_text == a2.persona_text and b.persona_version == 1
        assert b.commit_persona().text == SPORTS + " Always."
        fresh = PersonaAgent("u1", workspace=ws, answer_format=LABELS, use_actions=False)
        assert fresh.persona_text == b.persona_text and fresh.persona_version == 2
        assert fresh("match report").answer == b("match report").answer


def test_dspy_save_and_load_keep_their_meaning(tmp_path, hashing_embedder):
    lm = ScriptedLM(persona_sensitive())
    with Workspace(Settings(home=tmp_path, store=":memory:"), lm=lm, embedder=hashing_embedder) as ws:
        a = PersonaAgent("u1", workspace=ws, answer_format=LABELS, use_actions=False).with_persona(SPORTS)
        path = tmp_path / "agent.json"
        a.save(str(path))  # dspy.Module.save(path): program state, not a persona version
        assert path.is_file() and ws.personas.current("u1") is None
        b = PersonaAgent("u1", workspace=ws, answer_format=LABELS, use_actions=False)
        assert b.persona_text != SPORTS
        b.load(str(path))
        assert b.persona_text == SPORTS and b.persona_version is None
        assert b("match report").answer == "SPORTS"
        assert b.deepcopy().persona_text == SPORTS
        with pytest.raises(ValueError, match="persona of user 'u1'"):
            PersonaAgent("u2", workspace=ws, answer_format=LABELS).load(str(path))


def test_commit_persona_refuses_to_overwrite_a_version_stored_meanwhile(ws):
    agent = fill(ws, "alice", [("pasta", "FOOD")])
    v1 = agent.with_persona("You adore Italian cooking.").commit_persona()
    loaded = PersonaAgent("alice", workspace=ws)
    ws.personas.add("alice", "You adore French cooking.", v1.provenance.model_copy(update={"source": "manual"}))
    edited = loaded.with_persona("You adore Italian and Greek cooking.")
    with pytest.raises(PersonaConflict, match="derived from v1 \\(now v2\\)"):
        edited.commit_persona()
    assert ws.personas.current("alice").text == "You adore French cooking."
    assert edited.persona_version == 1  # still the version it derives from
    rebased = edited.with_persona(ws.personas.current("alice")).with_persona("You adore French and Greek cooking.")
    v3 = rebased.commit_persona()
    assert (v3.version, v3.parent_version) == (3, 2)


# --- the front door (issue 10, change 5) ----------------------------------------------------------


def test_agent_memory_is_bound_to_the_user_and_its_defaults_agree(ws):
    alice = PersonaAgent("alice", workspace=ws, answer_format=LABELS)
    assert alice.memory.add("pasta recipes for winter", "FOOD", timestamp=datetime(2022, 1, 1)).added == 1
    alice.observe("election night results", "POLITICS", timestamp=datetime(2022, 1, 2))  # the same as memory.add
    PersonaAgent("bob", workspace=ws).memory.add("pasta recipes for winter nights", "SPORTS")
    [old] = [m for m in alice.memory.history() if m.interaction.query == "election night results"]
    new = alice.memory.supersede(old.memory_id, "election night results", "SPORTS", timestamp=datetime(2022, 1, 3))
    assert [m.interaction.response for m in alice.memory.history()] == ["FOOD", "SPORTS"]
    assert len(alice.memory.history(include_superseded=True)) == alice.memory.count() == 3
    found = alice.memory.search("election night", k=5)
    assert {m.user_id for m in found} == {"alice"} and old.memory_id not in {m.memory_id for m in found}
    assert new.memory_id in {m.memory_id for m in found}
    assert [e.answer for e in alice.trainset()] == ["FOOD", "SPORTS"]  # what compile aligns on
    with pytest.raises(InvalidRecord, match="query"):
        alice.memory.add("  ", "FOOD")


def test_answer_formats_have_one_vocabulary():
    assert AnswerFormat.label("A", "B") == AnswerFormat(kind="label", labels=("A", "B"))
    assert AnswerFormat.rating(0.5, 5) == AnswerFormat(kind="rating", min_rating=0.5, max_rating=5.0)
    assert AnswerFormat.text() == AnswerFormat()
    with pytest.raises(ValueError, match="at least two labels"):
        AnswerFormat.label("A")


def test_the_top_level_package_exports_the_whole_workflow():
    import personaagent
    from personaagent.optimizers import ContinualAlignment, PersonaAlignment, compile_users
    from personaagent.traces import TraceReader, format_trace

    assert personaagent.PersonaAlignment is PersonaAlignment and personaagent.compile_users is compile_users
    assert personaagent.ContinualAlignment is ContinualAlignment
    assert personaagent.TraceReader is TraceReader and personaagent.format_trace is format_trace
    assert all(hasattr(personaagent, name) for name in personaagent.__all__)


def test_re_answering_the_past_skips_the_tool_choice_only_when_no_tool_could_help(ws):
    agent = fill(ws, "alice", [("pasta recipes for winter", "FOOD"), ("election night", "POLITICS")])
    asked = lambda: sum(r.asks_for("tool_name") for r in ws.lm.requests)  # noqa: E731
    before = asked()
    agent("pasta recipes", before=datetime(2022, 1, 2, tzinfo=timezone.utc))  # re-answering: memory is read-only
    assert asked() == before  # memory tools repeat the context, no documents: no call
    agent("pasta recipes")  # a live answer may still save a note
    assert asked() == before + 1
    ws.knowledge.add_documents("alice", ["Alice's cookbook: pasta is FOOD."])
    agent("pasta recipes", before=datetime(2022, 1, 2, tzinfo=timezone.utc))
    assert asked() == before + 2  # a document could change the answer: the tool is offered
