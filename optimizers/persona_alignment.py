"""Test-time persona alignment (paper §3.4) as a DSPy optimizer.

Each iteration: simulate the user's latest n interactions with the current persona, critique each
simulated answer against the user's true one (the textual loss), aggregate the critiques into one
bounded textual gradient, rewrite the persona from it, and keep the rewrite only if the gate
accepts it: a strictly better score on the n items and on held-out recent items the gradient
never saw. Every step is written as a TraceEvent. ``compile`` is pure: it returns an aligned
copy of the student and writes no persona version; storing the result is the caller's step
(``aligned.commit_persona()``, or ``commit_aligned``, which also records it in the trace).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
from dspy.teleprompt.teleprompt import Teleprompter

from personaagent.actions import format_memories
from personaagent.errors import LM_UNUSABLE_ERRORS, EmptyHistory
from personaagent.memory.semantic import metadata_topics, split_fact_lines
from personaagent.persona import MAX_PERSONA_CHARS, persona_diff, persona_length_problem, place_fact_lines
from personaagent.quoting import defuse_markers, quote
from personaagent.records import (
    Aggregated,
    AnswerFormat,
    CompileFinished,
    CompileStarted,
    CompileStatus,
    Critiqued,
    Edited,
    Gated,
    LMUsage,
    Memory,
    PersonaProvenance,
    Simulated,
    SimulationPhase,
    StepSkipped,
)
from personaagent.runtime.usage import UsageMeter, metered
from personaagent.signatures import CritiqueAnswer, NameItemKind, UpdatePersona
from personaagent.traces import TraceWriter, UserTrace, new_run_id

from .alignment_utils import (
    PersonaProgram,
    SimulatedItem,
    aggregate_critiques,
    call_metric,
    check_metric,
    default_metric,
    gate_verdict,
    habit_critique,
    item_kind_problem,
    latest_examples,
    mean_score,
    persona_problem,
)

__all__ = ["PersonaAlignment", "AlignmentResult"]

#: Most of an item's topics named as its kind in a critique ("Action/Horror/Sci-Fi items").
MAX_KIND_TOPICS = 4

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlignmentResult:
    """What one compile did, attached to the returned program as ``alignment_result``.

    Attributes:
        run_id, user_id: the trace run and the user.
        status: "edited" (an edit was accepted), "unchanged", "budget_exhausted" or "failed".
        score_initial, score_final: the gate's score of the starting and the final persona.
        iterations: iterations that got as far as critiquing.
        accepted_edits: edits the gate kept.
        base_version: the stored persona version the compile started from (what a commit of the
            result is checked against); None for a persona never stored.
        usage: LM cost of the whole compile.
        trace: every event of the run (``format_trace(result.trace)`` prints it).
    """

    run_id: str
    user_id: str
    status: CompileStatus
    score_initial: float
    score_final: float
    iterations: int
    accepted_edits: int
    base_version: int | None
    usage: LMUsage
    trace: UserTrace


@dataclass
class _Run:
    """What every step of one compile shares: where events go, the metric and the LM meter."""

    run_id: str
    user_id: str
    writer: TraceWriter
    metric: Callable
    meter: UsageMeter

    def write(self, event_type: type, **fields: Any) -> None:
        self.writer.write(event_type(run_id=self.run_id, user_id=self.user_id, **fields))


class PersonaAlignment(Teleprompter):
    """Compiles a user's persona by test-time alignment on their latest interactions.

    The student is a PersonaAgent (see ``PersonaProgram`` for what the loop uses of it). Paper
    cost per iteration without the gate: n simulations + at most n critiques (one per answer
    that is not right: a right answer has no loss to explain) + 1 update (at most 7 LM calls for
    n = 3). The gate scores the persona before and after the edit on the n items plus
    ``num_holdout`` older recent items (n + h more simulations; the "after" run is reused by the
    next iteration) and keeps the edit only on a strictly better score: an edit fitted to n items
    must also help on items it was not fitted to, and a tie is no evidence that it helps.

    Args:
        metric: scores a simulated answer against the truth; ``(gold, pred)`` or GEPA-style
            ``(gold, pred, trace, pred_name, pred_trace)`` returning a float or
            ``dspy.Prediction(score=..., feedback=...)``, scores in [0, 1]. Defaults to
            ``default_metric`` for the student's answer format.
        num_recent: how many of the latest interactions to simulate (the paper's n). Defaults to 3.
        num_holdout: recent interactions older than those n that the gate also scores (without a
            valset), so an accepted edit generalizes beyond the items it was fitted to. Defaults to 3.
        max_iterations: alignment iterations (paper: 1; gains level off after ~3). Defaults to 1.
        gate: keep an edit only if ``gate_verdict`` accepts it on the batch (or the valset).
            Defaults to True.
        stop_when_perfect: end early once every simulated answer scores 1. Defaults to True.
        max_gradient_chars: cap on the aggregated critiques. Defaults to 1500.
        min_persona_chars: shortest acceptable persona edit. Defaults to 20. The longest is the
            one persona budget, ``personaagent.persona.MAX_PERSONA_CHARS``, as for every persona.
        max_lm_calls: per-user budget of LM calls for one compile; None for no limit.
        max_tokens: per-user budget of LM tokens for one compile; None for no limit.
        prompt_model: LM for the critique and update steps. Defaults to the student's LM.
        traces_dir: folder for trace JSONL files; None keeps traces in memory only.

    Examples:
        >>> aligner = PersonaAlignment(num_recent=3, max_iterations=2)  # doctest: +SKIP
        >>> aligned = aligner.compile(agent)  # trainset: the agent's own history  # doctest: +SKIP
        >>> aligned.alignment_result.status  # doctest: +SKIP
        'edited'
        >>> aligned.commit_persona()  # store it as the user's next persona version  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        metric: Callable | None = None,
        # Alignment loop
        num_recent: int = 3,
        num_holdout: int = 3,
        max_iterations: int = 1,
        gate: bool = True,
        stop_when_perfect: bool = True,
        # Guards on the textual gradient and the edit
        max_gradient_chars: int = 1500,
        min_persona_chars: int = 20,
        # Budget configuration
        max_lm_calls: int | None = None,
        max_tokens: int | None = None,
        # Models and outputs
        prompt_model: Any = None,
        traces_dir: Path | None = None,
    ) -> None:
        super().__init__()
        if metric is not None:
            check_metric(metric)
        for name, value in (("num_recent", num_recent), ("max_iterations", max_iterations)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if num_holdout < 0:
            raise ValueError(f"num_holdout must be 0 or more, got {num_holdout}")
        for name, limit in (("max_lm_calls", max_lm_calls), ("max_tokens", max_tokens)):
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be a positive number or None, got {limit}")
        if not 0 < min_persona_chars < MAX_PERSONA_CHARS:
            raise ValueError(f"need 0 < min_persona_chars < {MAX_PERSONA_CHARS} (the persona budget)")
        self.metric = metric
        self.num_recent = num_recent
        self.num_holdout = num_holdout
        self.max_iterations = max_iterations
        self.gate = gate
        self.stop_when_perfect = stop_when_perfect
        self.max_gradient_chars = max_gradient_chars
        self.min_persona_chars = min_persona_chars
        self.max_lm_calls = max_lm_calls
        self.max_tokens = max_tokens
        self.prompt_model = prompt_model
        self.traces_dir = traces_dir

    def config(self) -> dict[str, Any]:
        """The settings that change a compile's outcome (what resume compares)."""
        outputs = ("prompt_model", "traces_dir", "metric")
        return {
            **{key: value for key, value in self.get_params().items() if key not in outputs},
            "metric": getattr(self.metric, "__qualname__", None),
        }

    def compile(
        self,
        student: PersonaProgram,
        *,
        trainset: Sequence[dspy.Example] | None = None,
        teacher: dspy.Module | None = None,
        valset: Sequence[dspy.Example] | None = None,
        run_id: str | None = None,
    ) -> Any:
        """Align the student's persona to its user's latest interactions. Writes no persona version.

        Args:
            student: the user's PersonaAgent; it is copied, never edited.
            trainset: the user's interactions as examples (``query`` input, ``answer`` truth,
                optional ``memory_id`` and ``timestamp``); the latest ``num_recent`` are used.
                Defaults to ``student.trainset()``, the user's own history.
            teacher: unused; accepted for the Teleprompter contract.
            valset: examples the gate scores on instead of the batch and held-out items; None
                gates on the batch plus the ``num_holdout`` interactions before it.
            run_id: groups the traces of several users compiled together. Defaults to a new id.

        Returns:
            A copy of the student with the aligned persona (not stored: ``commit_persona()``
            stores it, checked against the version the compile started from), carrying
            ``alignment_result`` (an AlignmentResult, with the trace).

        Raises:
            EmptyHistory: the trainset is empty.
            ValueError: ``valset`` is given but empty (a gate on nothing would accept anything).
        """
        if valset is not None and len(valset) == 0:
            raise ValueError("valset is empty: give the examples the gate should score, or None to gate on the batch")
        program = student.deepcopy()
        run_id = run_id or new_run_id()
        user_id = program.user_id
        holdout = self.num_holdout if self.gate and valset is None else 0
        recent = latest_examples(student.trainset() if trainset is None else trainset, self.num_recent + holdout)
        batch, held_out = recent[-self.num_recent :], recent[: -self.num_recent]
        if not batch:
            raise EmptyHistory(f"user {user_id!r}: alignment needs at least one interaction in the trainset")
        accepted_edits, iterations_run = 0, 0
        status: CompileStatus = "unchanged"

        with metered() as total, self._lm_scope(program):
            run = _Run(
                run_id,
                user_id,
                TraceWriter(self.traces_dir, run_id, user_id),
                self.metric or default_metric(program.answer_format),
                total,
            )
            run.write(
                CompileStarted,
                persona_version=program.persona_version,
                persona_text=program.persona_text,
                config=self.config(),
                batch_ids=tuple(str(ex.get("memory_id") or i) for i, ex in enumerate(batch)),
            )
            # STEP 1: simulate the batch, and what the gate scores besides (the valset, or the
            # held-out recent items), with the current persona.
            logger.info("user %r: simulating %d interactions", user_id, len(recent))
            gate_only = self._simulate(run, program, valset or held_out, phase="valset", iteration=1)
            simulated = self._simulate(run, program, batch, phase="batch", iteration=1)
            gate_items = gate_only if valset is not None else gate_only + simulated
            score_initial = score_current = mean_score(gate_items)

            for iteration in range(1, self.max_iterations + 1):
                if self.stop_when_perfect and all(item.score >= 1.0 for item in simulated):
                    logger.info("user %r: every simulated answer is right; stopping", user_id)
                    break
                if self._over_budget(total):
                    status = "budget_exhausted"
                    break
                if all(item.failed for item in simulated):
                    # No answer to compare with the truth: critiques of "(no answer)" would be
                    # noise, and the gate (0 -> 0, no more failures) would let any edit through.
                    run.write(StepSkipped, iteration=iteration, step="critique", error="every simulation failed")
                    break
                iterations_run = iteration
                # STEP 2: critique each simulated answer against the truth (the textual loss).
                logger.info("user %r: iteration %d: critiquing", user_id, iteration)
                critiques = self._critique(run, program, simulated, iteration)
                if critiques is None:
                    status = "budget_exhausted"
                    break
                if not critiques:
                    run.write(StepSkipped, iteration=iteration, step="aggregate", error="no critiques")
                    break
                # STEP 3: aggregate the critiques into one bounded textual gradient.
                gradient, truncated = aggregate_critiques(critiques, max_chars=self.max_gradient_chars)
                run.write(
                    Aggregated,
                    iteration=iteration,
                    gradient=gradient,
                    num_critiques=len(critiques),
                    truncated=truncated,
                )
                if self._over_budget(total):
                    status = "budget_exhausted"
                    break
                # STEP 4: rewrite the persona from the gradient.
                logger.info("user %r: iteration %d: editing the persona", user_id, iteration)
                candidate = self._edit(run, program, gradient, iteration)
                if candidate is None:
                    continue
                # STEP 5: the gate decides whether the edited copy replaces the program.
                edited = program.with_persona(candidate)
                if self.gate:
                    with metered() as step:
                        trial = self._simulate(run, edited, valset or recent, phase="trial", iteration=iteration)
                    verdict = gate_verdict(gate_items, trial)
                    gate_usage = step.usage
                else:
                    # Without the gate the new persona is not scored (the paper's 7-call budget).
                    trial, verdict, gate_usage = [], gate_verdict(gate_items, None), LMUsage()
                run.write(
                    Gated,
                    iteration=iteration,
                    accepted=verdict.accepted,
                    reason=verdict.reason,
                    score_before=verdict.score_before,
                    score_after=verdict.score_after,
                    usage=gate_usage,
                )
                if not verdict.accepted:
                    continue
                accepted_edits += 1
                status = "edited"
                score_current = verdict.score_after
                gate_items = trial or gate_items
                program = edited
                program.persona_provenance = PersonaProvenance(
                    source="alignment",
                    interaction_ids=tuple(str(ex.get("memory_id")) for ex in batch if ex.get("memory_id")),
                    critique=gradient,
                    run_id=run_id,
                )
                if self.gate and valset is None:
                    simulated = trial[-len(batch) :]  # the gate already re-answered the batch
                elif iteration < self.max_iterations:
                    simulated = self._simulate(run, program, batch, phase="batch", iteration=iteration + 1)

            if status != "budget_exhausted" and all(item.failed for item in simulated):
                status = "failed"
            run.write(
                CompileFinished,
                status=status,
                score_initial=score_initial,
                score_final=score_current,
                iterations=iterations_run,
                usage=total.usage,
            )
        logger.info(
            "user %r: %s, score %.3f -> %.3f, %d LM calls", user_id, status, score_initial, score_current, total.calls
        )
        program.alignment_result = AlignmentResult(
            run_id=run_id,
            user_id=user_id,
            status=status,
            score_initial=score_initial,
            score_final=score_current,
            iterations=iterations_run,
            accepted_edits=accepted_edits,
            base_version=student.persona_version,
            usage=total.usage,
            trace=UserTrace(run_id, user_id, tuple(run.writer.events)),
        )
        return program

    # --- steps ------------------------------------------------------------------------------

    def _lm_scope(self, program: Any) -> AbstractContextManager[Any]:
        workspace = getattr(program, "workspace", None)
        return workspace.lm_context() if workspace is not None else nullcontext()

    def _over_budget(self, meter: UsageMeter) -> bool:
        usage = meter.usage
        return (self.max_lm_calls is not None and usage.calls >= self.max_lm_calls) or (
            self.max_tokens is not None and usage.tokens >= self.max_tokens
        )

    def _simulate(
        self, run: _Run, program: Any, examples: Sequence[dspy.Example], *, phase: SimulationPhase, iteration: int
    ) -> list[SimulatedItem]:
        """Re-answer ``examples`` with ``program``, hiding each one (and anything newer) from it."""
        items = []
        for index, example in enumerate(examples):
            item_id = str(example.get("memory_id") or index)
            if self._over_budget(run.meter):
                run.write(StepSkipped, iteration=iteration, step="simulate", error="budget exhausted")
                items.append(SimulatedItem(example, None, 0.0, "not simulated: budget exhausted", failed=True))
                continue
            with metered() as step:
                try:
                    prediction = program(
                        **example.inputs(),
                        before=example.get("timestamp"),
                        exclude_ids=[item_id] if example.get("memory_id") else [],
                    )
                    scored = call_metric(run.metric, example, prediction)
                    item = SimulatedItem(
                        example,
                        prediction.answer,
                        scored.score,
                        scored.feedback,
                        retrieved=tuple(getattr(prediction, "retrieved", None) or ()),
                    )
                except LM_UNUSABLE_ERRORS:
                    raise  # not this item's failure: every call would fail the same way
                except Exception as exc:  # an unparseable or failed answer scores 0; the run goes on
                    logger.warning("simulation of %s failed: %s", item_id, exc)
                    run.write(StepSkipped, iteration=iteration, step="simulate", error=_short(exc))
                    item = SimulatedItem(example, None, 0.0, f"no answer: {_short(exc)}", failed=True)
            items.append(item)
            run.write(
                Simulated,
                iteration=iteration,
                phase=phase,
                interaction_id=item_id,
                query=example.query,
                simulated="" if item.answer is None else str(item.answer),
                truth=str(example.answer),
                score=item.score,
                feedback=item.feedback,
                usage=step.usage,
            )
        return items

    def _critique(
        self, run: _Run, program: Any, simulated: Sequence[SimulatedItem], iteration: int
    ) -> list[str] | None:
        """Critiques of the simulated answers; None when the budget ran out first."""
        critic = dspy.Predict(CritiqueAnswer)
        name_kind = dspy.Predict(NameItemKind)
        answer_format = program.answer_format
        critiques = []
        for index, item in enumerate(simulated):
            if item.score >= 1.0:
                # A right answer has no loss to explain: asked anyway, a small model invents a
                # habit (measured on dev users), which only dilutes the gradient.
                continue
            if self._over_budget(run.meter):
                return None
            item_id = str(item.example.get("memory_id") or index)
            # Choices, not notes. All stored text is quoted data: it must not instruct the model
            # that edits the persona.
            related = [m for m in item.retrieved if m.interaction.is_evidence]
            with metered() as step, self._prompt_model_scope():
                try:
                    if answer_format.kind in ("label", "rating"):
                        # Labels and ratings: the sentence is written from the facts (see
                        # habit_critique); only the kind of item may come from the LM.
                        critique = habit_critique(
                            answer_format,
                            _item_kind(item.example, related, name_kind, answer_format),
                            item.answer,
                            str(item.example.answer),
                            [m.interaction.response for m in related],
                        )
                        if self.metric is not None and item.feedback:
                            # A caller's metric may know what the facts above do not.
                            critique += f" Feedback: {quote(item.feedback, max_chars=300)}"
                    else:
                        # Facts first (the guess, the truth, the verdict, the user's own related
                        # choices), so the model states a habit instead of guessing one.
                        critique = critic(
                            query=quote(str(item.example.query)),
                            assistant_guess="(no answer)" if item.answer is None else quote(str(item.answer)),
                            user_choice=quote(str(item.example.answer)),
                            verdict=defuse_markers(item.feedback),
                            related_past_choices=format_memories(related),
                        ).critique.strip()
                except LM_UNUSABLE_ERRORS:
                    raise
                except Exception as exc:
                    logger.warning("critique of %s failed: %s", item_id, exc)
                    run.write(StepSkipped, iteration=iteration, step="critique", error=_short(exc))
                    continue
            if not critique:
                run.write(StepSkipped, iteration=iteration, step="critique", error="empty critique")
                continue
            critiques.append(critique)
            run.write(Critiqued, iteration=iteration, interaction_id=item_id, critique=critique, usage=step.usage)
        return critiques

    def _edit(self, run: _Run, program: Any, gradient: str, iteration: int) -> str | None:
        """A validated persona rewrite, or None (recorded) when the LM gave no usable one."""
        before = program.persona_text
        # The computed facts (label shares, rating mean...) are counted, not learned: the LM
        # rewrites only the other lines. Given the whole persona, the 1.5B model dropped the
        # facts for prose about one item, and the gate refused every such edit (dev and test).
        facts, learned = split_fact_lines(before)
        with metered() as step, self._prompt_model_scope():
            try:
                feedback = defuse_markers(gradient)  # critiques may echo stored text
                rewrite = dspy.Predict(UpdatePersona)(persona=learned, feedback=feedback).new_persona
            except LM_UNUSABLE_ERRORS:
                raise
            except Exception as exc:
                run.write(StepSkipped, iteration=iteration, step="edit", error=_short(exc))
                return None
        _restated, rewrite = split_fact_lines(rewrite)  # a count the LM restated may be altered
        candidate = place_fact_lines(rewrite, facts)
        problem = persona_problem(
            rewrite,
            previous=learned,
            gradient=gradient,
            min_chars=self.min_persona_chars,
        )
        too_long = persona_length_problem(candidate)
        if problem is None and too_long is not None:
            problem = f"edit is too long with the computed facts: {too_long}"
        if problem is not None:
            logger.warning("user %r: persona edit rejected: %s", run.user_id, problem)
            run.write(StepSkipped, iteration=iteration, step="edit", error=problem, usage=step.usage)
            return None
        run.write(
            Edited,
            iteration=iteration,
            persona_before=before,
            persona_after=candidate,
            diff=persona_diff(before, candidate),
            usage=step.usage,
        )
        return candidate

    def _prompt_model_scope(self) -> AbstractContextManager[Any]:
        return dspy.context(lm=self.prompt_model) if self.prompt_model is not None else nullcontext()


def _item_kind(example: dspy.Example, related: Sequence[Memory], name_kind: dspy.Predict, answer_format: AnswerFormat) -> str:
    """The kind of item ``example`` is: its own topics when its metadata names them (genres),
    else what the LM calls it, from the item and the user's most similar items (their texts
    only: shown the user's answers too, the 1.5B model named a label, "WORLD NEWS").

    Raises:
        ValueError: the LM's name is not a short phrase, or is a label (``item_kind_problem``).
    """
    topics = metadata_topics(example.get("metadata") or {})
    if topics:
        return f"{'/'.join(topics[:MAX_KIND_TOPICS])} items"
    similar = "\n".join(f"- {quote(m.interaction.query, max_chars=160)}" for m in related) or "(none)"
    item_kind = name_kind(query=quote(str(example.query)), similar_items=similar).item_kind.strip().rstrip(".")
    problem = item_kind_problem(item_kind, labels=answer_format.labels)
    if problem is not None:
        raise ValueError(f"unusable item kind {item_kind[:80]!r}: {problem}")
    return item_kind


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
