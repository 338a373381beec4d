"""PersonaAgent: one user's agent, as a DSPy program (paper §3).

query ─▶ episodic retrieval (the user's top-k similar past interactions)
      ─▶ action module (persona-guided tool calls, bounded)
      ─▶ response (persona-conditioned, typed by the task; the retrieved memories are also its
         few-shot demonstrations, so the model sees how this user answered similar queries)

The persona is the *instructions* of the two LM predictors (``respond`` and ``act.choose``),
followed by each one's fixed task instructions. The alignment optimizer edits exactly that text.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

import dspy
from dspy.utils.exceptions import AdapterParseError, ContextWindowExceededError

from personaagent import telemetry
from personaagent.actions import (
    BUILTIN_TOOL_NAMES,
    KNOWLEDGE_LOOKUP,
    ActionModule,
    as_tool,
    builtin_tools,
    format_memories,
    search_memories,
)
from personaagent.errors import EmptyHistory, InvalidRecord, QueryTooLong, UnknownUser, UnparseableAnswer
from personaagent.memory import AddReport, UserMemory
from personaagent.memory.semantic import history_facts, split_fact_lines
from personaagent.persona import GENERIC_PERSONA, persona_length_problem, place_fact_lines, seed_persona_text
from personaagent.quoting import defuse_markers
from personaagent.records import (
    AnswerFormat,
    Interaction,
    Memory,
    Persona,
    PersonaProvenance,
    match_label,
    validate_user_id,
)
from personaagent.signatures import CHOOSE_TOOL_TASK, RESPOND_TASK, response_signature
from personaagent.workspace import Workspace

__all__ = ["PersonaAgent", "compose_instructions", "memory_demos", "examples_from_memories"]

logger = logging.getLogger(__name__)

#: The key of the persona's user and version in the agent's DSPy state.
_PERSONA_STATE = "persona"

#: Characters per token, a conservative estimate used to refuse queries that cannot fit.
_CHARS_PER_TOKEN = 3


def memory_demos(memories: Sequence[Memory]) -> list[dspy.Example]:
    """Retrieved memories as few-shot demonstrations of the answer predictor, most similar last.

    Used only for models that need them (``PackagedModel.memories_as``): a tiny model imitates
    demonstrated turns but cannot use the same memories as context text, while on a capable model
    the demonstrations' majority answer outvotes the persona (RESULTS.md, "How memories reach the
    answer"). Notes without a response are not demonstrations. The stored text keeps its words but
    not DSPy's field markers (``quoting.defuse_markers``): a demonstration turn must hold exactly
    the fields its signature says, whatever the user's text contains.
    """
    return [
        dspy.Example(
            query=defuse_markers(m.interaction.query),
            context="(a similar past interaction)",
            answer=defuse_markers(m.interaction.response),
        )
        for m in reversed(memories)
        if m.interaction.is_evidence
    ]


def examples_from_memories(memories: Sequence[Memory]) -> list[dspy.Example]:
    """Memories as alignment examples: ``query`` is the input, ``answer`` the user's true response.

    Only evidence of the user becomes an example (``Interaction.is_evidence``): a note the agent
    saved has no true response and is never simulated or critiqued. Each example carries its
    memory id and timestamp so re-answering it hides it (and anything newer) from retrieval, and
    its metadata, whose topics (genres) name the kind of item in a critique.
    """
    return [
        dspy.Example(
            query=m.interaction.query,
            answer=m.interaction.response,
            memory_id=m.memory_id,
            timestamp=m.interaction.timestamp,
            metadata=dict(m.interaction.metadata),
        ).with_inputs("query")
        for m in memories
        if m.interaction.is_evidence
    ]


def compose_instructions(persona_text: str, task: str) -> str:
    """Persona first (the system prompt), then the predictor's fixed task instructions."""
    return f"{persona_text.strip()}\n\n{task}"


def _answer_text(error: AdapterParseError) -> str | None:
    """The answer field of an unparsed completion, read as plain text; None if it has none.

    The typed parse rejects e.g. ``Politics`` for the label ``politics``; read as text, the answer
    can still be matched to the labels the way the metric matches them.
    """
    as_text = error.signature.with_updated_fields("answer", type_=str)
    for adapter in (dspy.ChatAdapter(use_json_adapter_fallback=False), dspy.JSONAdapter()):
        try:
            return str(adapter.parse(as_text, error.lm_response)["answer"])
        except Exception:  # noqa: BLE001 - not in this adapter's format; try the next one
            continue
    return None


def _shown(text: str | None) -> str:
    if text is None:
        return "no readable answer"
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= 80 else flat[:77] + "...")


@contextmanager
def _context_overflow_as_query_too_long() -> Iterator[None]:
    # The length check before the call is an estimate; the model's own count is the truth.
    try:
        yield
    except ContextWindowExceededError as exc:
        raise QueryTooLong(
            f"the prompt (persona, memories and query) does not fit the model's context: {exc}. "
            "Shorten the query, lower k, or raise PERSONAAGENT_LOCAL_CONTEXT_TOKENS."
        ) from None


class PersonaAgent(dspy.Module):
    """One user's personalized agent.

    Args:
        user_id: whose memory, persona and profile the agent uses. Reads never leave this user.
        workspace: shared LM, embedder, store and persona book. Defaults to
            ``Workspace.default()``, built from the environment.
        answer_format: free text (default), a label from a set, or a rating.
        tools: extra tools, as ``dspy.Tool`` or one-string-argument callables.
        k: past interactions retrieved per query. Defaults to 5.
        max_tool_steps: most tool calls per query. Defaults to 1.
        use_persona: condition on the persona (False: a generic prompt; the "w/o persona"
            ablation). Defaults to True.
        use_memory: retrieve past interactions (the "w/o memory" ablation). Defaults to True.
        use_actions: let the LM call tools (the "w/o action" ablation). Defaults to True.
        memories_as: how the answer predictor gets the retrieved memories: ``"context"`` (text
            beside the query; the persona can steer the answer) or ``"demos"`` (also as few-shot
            turns). Defaults to what was measured best for the workspace's model
            (``Workspace.memories_as``).

    Examples:
        >>> agent = PersonaAgent("u1")  # doctest: +SKIP
        >>> agent.observe("Rate: Heat (1995)", "4.5")  # doctest: +SKIP
        >>> agent("Rate: Ronin (1998)").answer  # doctest: +SKIP
    """

    def __init__(
        self,
        user_id: str,
        *,
        workspace: Workspace | None = None,
        answer_format: AnswerFormat | None = None,
        tools: Sequence[dspy.Tool | Callable[[str], str]] = (),
        k: int = 5,
        max_tool_steps: int = 1,
        use_persona: bool = True,
        use_memory: bool = True,
        use_actions: bool = True,
        memories_as: Literal["context", "demos"] | None = None,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError("k must be at least 1")
        self.user_id = validate_user_id(user_id)
        self.workspace = workspace if workspace is not None else Workspace.default()
        self.answer_format = answer_format or AnswerFormat()
        self.extra_tools = [as_tool(tool) for tool in tools]
        self.k = k
        self.use_persona = use_persona
        self.use_memory = use_memory
        self.use_actions = use_actions
        self.memories_as = memories_as or self.workspace.memories_as
        self.respond = dspy.Predict(response_signature(self.answer_format))
        builtin = BUILTIN_TOOL_NAMES if use_memory else (KNOWLEDGE_LOOKUP,)
        self.act = ActionModule([*builtin, *(tool.name for tool in self.extra_tools)], max_steps=max_tool_steps)
        stored = self.workspace.personas.current(self.user_id) if use_persona else None
        #: The stored version this program's persona is, or was derived from: what commit_persona
        #: checks the persona book against. None before the user's first stored version.
        self.persona_version: int | None = stored.version if stored else None
        #: Where the persona in the instructions came from, if it is not stored yet (seed, alignment).
        self.persona_provenance: PersonaProvenance | None = None
        start = stored.text if stored else (seed_persona_text(None) if use_persona else GENERIC_PERSONA)
        self._write_instructions(start)

    # --- persona ----------------------------------------------------------------------------
    # The persona lives in one place: the instructions of the two predictors, which DSPy's own
    # state (dump_state/load_state, save/load) and optimizers read and write. Everything else is
    # derived from them.

    @property
    def persona_text(self) -> str:
        """The persona in this program's instructions (stored or not)."""
        instructions = self.respond.signature.instructions
        return instructions.removesuffix(compose_instructions("", RESPOND_TASK)).strip()

    def _write_instructions(self, text: str) -> None:
        if not text.strip():
            raise ValueError("a persona must not be empty")
        self.respond.signature = self.respond.signature.with_instructions(compose_instructions(text, RESPOND_TASK))
        self.act.choose.signature = self.act.choose.signature.with_instructions(
            compose_instructions(text, CHOOSE_TOOL_TASK)
        )

    def with_persona(self, persona: str | Persona) -> PersonaAgent:
        """A copy of this agent answering with ``persona``; this agent is unchanged.

        Args:
            persona: new persona text, derived from this agent's (the copy keeps its
                ``persona_version`` as the base its commit is checked against), or a stored
                ``Persona`` of this user (the copy is at that version).

        Raises:
            ValueError: the text is empty, or the Persona belongs to another user.
        """
        if isinstance(persona, Persona) and persona.user_id != self.user_id:
            raise ValueError(f"persona of user {persona.user_id!r} given to the agent of {self.user_id!r}")
        copy = self.deepcopy()
        copy._write_instructions(persona.text if isinstance(persona, Persona) else persona)
        copy.persona_provenance = None
        if isinstance(persona, Persona):
            copy.persona_version = persona.version
        copy.__dict__.pop("alignment_result", None)  # a compile's result describes the old persona
        return copy

    def stored_persona(self) -> Persona | None:
        """The user's current stored persona version, read from the persona book (None if none)."""
        return self.workspace.personas.current(self.user_id)

    def seeded(self, *, force_profile: bool = False) -> PersonaAgent:
        """A copy answering with the user's stored persona, or, if they have none (or
        ``force_profile``), with a first persona built from their profile (semantic memory).

        Writes no persona version: ``commit_persona()`` stores the seed (with "seed" provenance).

        Raises:
            EmptyHistory: a profile is needed and the user has no interactions.
        """
        current = self.stored_persona()
        if current is not None and not force_profile:
            return self.with_persona(current)
        memories = self.workspace.episodic.history(self.user_id, include_superseded=False)
        if not memories:
            raise EmptyHistory(
                f"user {self.user_id!r} has no interactions; add some with agent.observe() or `personaagent ingest`"
            )
        with self.workspace.lm_context():
            profile = self.workspace.semantic(self.user_id, memories, force=force_profile)
        seeded = self.with_persona(seed_persona_text(profile))
        seeded.persona_provenance = PersonaProvenance(
            source="seed", note=f"profile of {profile.num_interactions} interactions"
        )
        return seeded

    def with_recounted_facts(self) -> PersonaAgent:
        """This agent, or a copy whose persona states the computed facts (label shares, rating
        mean and spread, ...) of the user's current history, if they changed.

        The facts are counted, not learned (``history_facts``), and alignment passes them through
        unchanged, so as interactions arrive their counts go stale unless recounted. Only lines
        in the forms ``history_facts`` writes are replaced; a persona without such lines (one
        written by hand) is left as it is, and so is one the new lines would push over the budget.
        Writes no persona version: ``commit_persona()`` stores the copy ("recount" provenance).
        """
        facts, rest = split_fact_lines(self.persona_text)
        if not facts:
            return self
        memories = self.workspace.episodic.history(self.user_id, include_superseded=False)
        recounted = tuple(history_facts(memories).splitlines())
        if not recounted or recounted == facts:
            return self
        text = place_fact_lines(rest, recounted) if rest else "\n".join(recounted)
        too_long = persona_length_problem(text)
        if too_long is not None:
            logger.warning("user %r: facts not recounted: %s", self.user_id, too_long)
            return self
        copy = self.with_persona(text)
        answered = sum(memory.interaction.is_evidence for memory in memories)
        copy.persona_provenance = PersonaProvenance(source="recount", note=f"facts of {answered} interactions")
        return copy

    def commit_persona(self, provenance: PersonaProvenance | None = None) -> Persona:
        """Store the persona in this program's instructions as the user's next version.

        A compare-and-swap: the version is written only if the user's current stored version is
        still ``persona_version``, the one this persona was loaded as or derived from, so an edit
        of an old version never silently wins over a newer one. If the current version already
        has this text, nothing is written. Either way this program is then at that version.

        Args:
            provenance: where the persona came from. Defaults to ``persona_provenance`` (set by
                ``seeded`` and by alignment), else "manual".

        Returns:
            The stored ``Persona`` this program is now at.

        Raises:
            PersonaConflict: another version was stored since ``persona_version``; nothing is written.
        """
        current = self.stored_persona()
        if current is not None and current.text == self.persona_text:
            persona = current
        else:
            persona = self.workspace.personas.add_if_current(
                self.user_id,
                self.persona_text,
                provenance or self.persona_provenance or PersonaProvenance(source="manual"),
                parent_version=self.persona_version,
            )
        self.persona_version, self.persona_provenance = persona.version, None
        return persona

    @classmethod
    def for_user(cls, user_id: str, *, workspace: Workspace | None = None, **kwargs: Any) -> PersonaAgent:
        """The agent of a known user (one with memories or a persona), at their stored persona.

        Raises:
            UnknownUser: the user has neither memories nor a persona.
        """
        workspace = workspace if workspace is not None else Workspace.default()
        if workspace.episodic.count(user_id) == 0 and workspace.personas.current(user_id) is None:
            raise UnknownUser(f"no memories or persona for user {user_id!r}; ingest some with `personaagent ingest`")
        return cls(user_id, workspace=workspace, **kwargs)

    def trainset(self) -> list[dspy.Example]:
        """The user's interactions (corrected ones left out) as alignment examples, oldest first:
        what ``PersonaAlignment.compile(agent)`` aligns on when given no trainset."""
        return examples_from_memories(self.memory.history())

    # --- DSPy program state -----------------------------------------------------------------

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        """DSPy's state (the predictors' instructions and demos) plus the persona's user and version."""
        state = super().dump_state(json_mode=json_mode)
        state[_PERSONA_STATE] = {"user_id": self.user_id, "version": self.persona_version}
        return state

    def load_state(self, state: dict[str, Any], *, allow_unsafe_lm_state: bool = False) -> None:
        """Load DSPy state (as ``dump_state`` or ``save(path)`` wrote it) into this agent.

        Raises:
            ValueError: the state is another user's persona (give its text to ``with_persona``).
        """
        saved = state.get(_PERSONA_STATE) or {}
        if saved.get("user_id", self.user_id) != self.user_id:
            raise ValueError(
                f"this state holds the persona of user {saved['user_id']!r}, not {self.user_id!r}; "
                "to reuse its text, pass it to with_persona()"
            )
        super().load_state(state, allow_unsafe_lm_state=allow_unsafe_lm_state)
        # State without a version (another program's) is treated as an edit of no stored version.
        self.persona_version = saved.get("version")
        self.persona_provenance = None

    # --- memory -----------------------------------------------------------------------------

    @property
    def memory(self) -> UserMemory:
        """This user's episodic memory: ``add``, ``search``, ``history``, ``supersede``, ``count``."""
        return UserMemory(self.workspace.episodic, self.user_id)

    def observe(
        self,
        query: str,
        response: str,
        *,
        timestamp: datetime | None = None,
        metadata: dict | None = None,
    ) -> AddReport:
        """Remember an interaction of this user: the same as ``agent.memory.add``."""
        return self.memory.add(query, response, timestamp=timestamp, metadata=metadata)

    # --- answering --------------------------------------------------------------------------

    def _check_query(self, query: str) -> None:
        if not isinstance(query, str) or not query.strip():
            raise InvalidRecord("query must be a non-empty string")
        limit = self.workspace.settings.max_query_chars
        if len(query) > limit:
            raise QueryTooLong(
                f"query is {len(query):,} characters (~{len(query) // _CHARS_PER_TOKEN:,} tokens); this model's "
                f"limit is {limit:,} characters. Shorten the query or use a model with a larger context."
            )

    def _tool_choice_can_matter(self, read_only: bool) -> bool:
        """Whether a tool could add anything to the answer's context.

        While a past interaction is re-answered (``read_only``, as alignment does), with no tool
        of the user's own: ``memory_search`` repeats the retrieval already in the context,
        ``memory_update`` writes nothing, and ``knowledge_lookup`` finds nothing for a user
        without documents. The tool-choice call could then change no answer, so it is skipped
        (one LM call less per simulated interaction).
        """
        if self.extra_tools or not self.use_memory or not read_only:
            return True
        return self.workspace.knowledge.count(self.user_id) > 0

    def forward(
        self,
        query: str,
        *,
        before: datetime | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> dspy.Prediction:
        """Answer ``query`` as this user.

        Args:
            query: what the user asks now.
            before: only memories older than this are visible (used to re-answer a past
                interaction honestly, as the optimizer does). A naive time is read as UTC.
            exclude_ids: memory ids hidden from retrieval (the interaction being re-answered).

        Returns:
            ``Prediction(answer, used_tools, retrieved)``: the typed answer, the tool calls made
            (``ToolCall`` records), and the retrieved ``Memory`` records.

        Raises:
            dspy.utils.exceptions.LMError: An LM call failed (DSPy has already retried rate
                limits, timeouts and server errors with backoff); e.g. ``LMRateLimitError``,
                ``ContextWindowExceededError``.
            UnparseableAnswer: The LM's tool choice or answer does not fit the answer format
                even when labels are matched leniently (case, whitespace and punctuation do not
                matter, as in the metric): a label outside the set, a non-numeric or non-finite
                rating. It is also a DSPy ``AdapterParseError``. The agent never makes up an
                answer: callers that must go on (the optimizer, the evaluation) catch this and
                score the item as failed.
        """
        with telemetry.span("personaagent.ask", user_id=self.user_id, kind="AGENT", count_tokens=True,
                            attributes={"personaagent.persona_version": self.persona_version}):
            return self._forward(query, before=before, exclude_ids=exclude_ids)

    def _forward(self, query: str, *, before: datetime | None, exclude_ids: Sequence[str]) -> dspy.Prediction:
        self._check_query(query)
        # The query may be stored text too (alignment re-answers past interactions).
        query = defuse_markers(query)
        episodic = self.workspace.episodic
        retrieved: list[Memory] = []
        if self.use_memory:
            retrieved = search_memories(episodic, self.user_id, query, k=self.k, before=before, exclude_ids=exclude_ids)
        context = format_memories(retrieved) if self.use_memory else "(memory not used)"
        used_tools = []
        with self.workspace.lm_context(), _context_overflow_as_query_too_long():
            read_only = before is not None or bool(exclude_ids)
            if self.use_actions and self._tool_choice_can_matter(read_only):
                tools = builtin_tools(
                    self.user_id,
                    episodic=episodic,
                    knowledge=self.workspace.knowledge,
                    k=self.k,
                    read_only=read_only,
                    before=before,
                    exclude_ids=exclude_ids,
                )
                offered = [tool for tool in [*tools, *self.extra_tools] if tool.name in self.act.tool_names]
                try:
                    used_tools = self.act(query=query, tools=offered, observations=context)
                except UnparseableAnswer:
                    raise
                except AdapterParseError as exc:
                    raise UnparseableAnswer(
                        f"the model's tool choice does not parse (allowed: {', '.join(self.act.tool_names)}, "
                        "finish); try again, or use a more capable model (--lm)",
                        signature=exc.signature,
                        lm_response=exc.lm_response,
                    ) from None
                for call in used_tools:
                    context += f"\n[{call.name}] {call.observation}"
            # Memories are always in the context; as demonstrations too only where the model was
            # measured to need them, since demonstrated answers outvote the persona.
            demos = memory_demos(retrieved) if self.memories_as == "demos" else []
            answer = self._answer(query=query, context=context, demos=demos)
        return dspy.Prediction(answer=answer, used_tools=used_tools, retrieved=retrieved)

    def _answer(self, **inputs) -> str | float:
        """The respond predictor's answer in the answer format: a label from the set (matched
        like the metric matches), a finite rating clamped to the range, or text."""
        answer_format = self.answer_format
        try:
            answer = self.respond(**inputs).answer
        except AdapterParseError as exc:
            text = _answer_text(exc)
            if answer_format.kind == "label" and text is not None:
                label = match_label(text, answer_format.labels)
                if label is not None:
                    return label
            expected = (
                f"one of the labels {', '.join(answer_format.labels)}"
                if answer_format.kind == "label"
                else f"a rating from {answer_format.min_rating:g} to {answer_format.max_rating:g}"
                if answer_format.kind == "rating"
                else "an answer"
            )
            raise UnparseableAnswer(
                f"the model gave {_shown(text)}, not {expected}; try again, or use a more capable model (--lm)",
                signature=exc.signature,
                lm_response=exc.lm_response,
            ) from None
        if answer_format.kind == "rating":
            if not math.isfinite(float(answer)):
                # "nan" and "inf" parse as floats; nan even slips through the clamping below.
                raise UnparseableAnswer(
                    f"the model gave {_shown(str(answer))}, not a finite rating; try again, or use a more "
                    "capable model (--lm)",
                    signature=self.respond.signature,
                    lm_response=str(answer),
                )
            answer = min(max(float(answer), answer_format.min_rating), answer_format.max_rating)
        return answer
