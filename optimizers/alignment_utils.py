"""Pure helpers of the persona-alignment optimizer (kept apart from the loop, like simba_utils).

Nothing here calls an LM, so each piece is unit-tested on its own.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dspy

from personaagent.actions import as_ratings
from personaagent.guards import generated_text_problem, repetition_problem, scaffolding_problem
from personaagent.persona import persona_length_problem
from personaagent.quoting import quote
from personaagent.records import EARLIEST, AnswerFormat, PersonaProvenance, as_aware, match_label
from personaagent.signatures import CritiqueAnswer, NameItemKind, UpdatePersona

__all__ = [
    "PersonaProgram",
    "SimulatedItem",
    "GateVerdict",
    "gate_verdict",
    "mean_score",
    "ScoredFeedback",
    "call_metric",
    "check_metric",
    "default_metric",
    "latest_examples",
    "aggregate_critiques",
    "habit_critique",
    "item_kind_problem",
    "persona_problem",
    "fold_text",
]

logger = logging.getLogger(__name__)


class PersonaProgram(Protocol):
    """What PersonaAlignment uses of its student; ``PersonaAgent`` is one.

    The persona is the program's instructions; ``with_persona`` returns an edited copy, and
    ``persona_version`` is the stored version the persona is or derives from.
    """

    user_id: str
    answer_format: AnswerFormat
    persona_version: int | None
    persona_provenance: PersonaProvenance | None

    @property
    def persona_text(self) -> str: ...

    def with_persona(self, persona: str) -> Any: ...

    def trainset(self) -> list[dspy.Example]: ...

    def deepcopy(self) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class SimulatedItem:
    """One interaction re-answered with a persona, and how well it matched the truth."""

    example: dspy.Example
    answer: Any
    score: float
    feedback: str
    failed: bool = False
    retrieved: tuple[Any, ...] = ()  # the memories the answer saw: the user's related past choices


def mean_score(items: Sequence[SimulatedItem]) -> float:
    """The mean score of ``items``; 0.0 for none (callers never gate on an empty set)."""
    return sum(item.score for item in items) / len(items) if items else 0.0


@dataclass(frozen=True)
class GateVerdict:
    """Whether an edited persona replaces the current one, why, and the scores compared."""

    accepted: bool
    reason: str
    score_before: float
    score_after: float


def gate_verdict(before: Sequence[SimulatedItem], after: Sequence[SimulatedItem] | None) -> GateVerdict:
    """The gate: keep an edit only if it scores strictly better and fails no more often.

    A tie is not a win: on a handful of items an edit that changes nothing ties, and accepting
    it would let any plausible-looking rewrite replace a working persona.

    Args:
        before: the current persona's answers on the gate's items.
        after: the edited persona's answers on the same items; None when the gate is off (the
            edit is accepted unscored).
    """
    score_before = mean_score(before)
    if after is None:
        return GateVerdict(True, "gate disabled", score_before, score_before)
    score_after = mean_score(after)
    failures_before = sum(item.failed for item in before)
    failures_after = sum(item.failed for item in after)
    # A gain within float rounding is a tie: means of the same scores summed in another order
    # differ in the last digit (0.825925925925926 vs 0.8259259259259258 was accepted on dev users).
    better = score_after > score_before and not math.isclose(score_after, score_before, abs_tol=1e-9)
    accepted = better and failures_after <= failures_before
    if failures_after > failures_before:
        reason = f"{failures_after} simulations failed with the edit (before: {failures_before})"
    else:
        reason = f"score {score_after:.3f} {'>' if accepted else '<='} {score_before:.3f}"
    return GateVerdict(accepted, reason, score_before, score_after)


@dataclass(frozen=True)
class ScoredFeedback:
    """A metric's verdict on one simulated answer."""

    score: float
    feedback: str


def check_metric(metric: Callable) -> None:
    """Raise TypeError unless ``metric`` takes ``(gold, pred)`` or GEPA's
    ``(gold, pred, trace, pred_name, pred_trace)``."""
    if not callable(metric):
        raise TypeError("metric must be callable")
    signature = inspect.signature(metric)
    for arity in (5, 2):
        try:
            signature.bind(*range(arity))
            return
        except TypeError:
            continue
    raise TypeError(
        "metric must accept (gold, pred) or (gold, pred, trace, pred_name, pred_trace) like dspy.GEPA's "
        "feedback metrics; see https://dspy.ai/api/optimizers/GEPA/"
    )


def call_metric(metric: Callable, gold: dspy.Example, pred: dspy.Prediction) -> ScoredFeedback:
    """Call a plain or GEPA-style metric and return its score in [0, 1] and its feedback text."""
    try:
        result = metric(gold, pred, None, None, None)
    except TypeError:
        result = metric(gold, pred)
    if isinstance(result, dspy.Prediction) or hasattr(result, "score"):
        score, feedback = float(result.score), str(getattr(result, "feedback", "") or "")
    else:
        score, feedback = float(result), ""
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"metric returned {score}; alignment needs scores in [0, 1]")
    return ScoredFeedback(score=score, feedback=feedback)


def fold_text(text: Any) -> str:
    """Text with whitespace runs folded to one space and case dropped, for comparing prose."""
    return re.sub(r"\s+", " ", str(text)).strip().lower()


def _token_f1(predicted: str, truth: str) -> float:
    pred_tokens = re.findall(r"\w+", predicted.lower())
    true_tokens = re.findall(r"\w+", truth.lower())
    if not pred_tokens or not true_tokens:
        return float(pred_tokens == true_tokens)
    common = sum(min(pred_tokens.count(t), true_tokens.count(t)) for t in set(pred_tokens))
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(true_tokens)
    return 2 * precision * recall / (precision + recall)


def default_metric(answer_format: AnswerFormat) -> Callable:
    """A GEPA-style feedback metric for the answer format.

    label: 1 if answer and truth name the same label (``match_label``: case, whitespace and
    punctuation do not matter), else 0; rating: 1 - |error| / range;
    text: unigram F1. The feedback says what the user answered, for the critique step, and for a
    rating how far off the answer is and in which direction ("0.5 too high").
    """

    def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        truth, answer = str(gold.answer), pred.answer
        miss = "wrong"
        if answer_format.kind == "label":
            # The agent's answer parser matches labels the same way (records.match_label).
            matched = match_label(answer, answer_format.labels)
            score = float(matched is not None and matched == match_label(truth, answer_format.labels))
        elif answer_format.kind == "rating":
            scale = answer_format.max_rating - answer_format.min_rating
            try:
                signed_error = float(answer) - float(truth)
            except (TypeError, ValueError):
                signed_error = None
            if signed_error is not None and not math.isfinite(signed_error):  # "nan", "inf"
                signed_error = None
            score = 0.0 if signed_error is None else max(0.0, 1.0 - abs(signed_error) / scale)
            if signed_error:
                # The direction is a fact to state, not to leave to the critic: given only both
                # numbers, the 1.5B model's critiques said "higher" and "lower" in one sentence.
                miss = f"{abs(signed_error):g} {'too high' if signed_error > 0 else 'too low'}"
        else:
            score = _token_f1(str(answer), truth)
        verdict = "correct" if score >= 1.0 else f"{miss} (score {score:.2f})"
        return dspy.Prediction(score=score, feedback=f"The answer {answer!s} is {verdict}; the user answered {truth}.")

    return metric


def latest_examples(trainset: Sequence[dspy.Example], n: int) -> list[dspy.Example]:
    """The ``n`` most recent examples with a true answer (by ``timestamp``; examples without one
    count as oldest, and keep their given order). Naive and aware timestamps mix (naive is UTC).

    An example whose ``answer`` is blank has no truth to compare with (e.g. an agent's note): it
    is never simulated or critiqued.

    Raises:
        InvalidRecord: an example's timestamp is not a time.
    """
    trainset = [example for example in trainset if "answer" not in example or str(example.answer).strip()]
    moments = [as_aware(example.get("timestamp")) for example in trainset]
    order = sorted(range(len(trainset)), key=lambda i: (moments[i] is not None, moments[i] or EARLIEST, i))
    return [trainset[i] for i in order[-n:]]


#: Longest item kind accepted from the LM; a longer one is a sentence, not a kind.
MAX_ITEM_KIND_CHARS = 60


def item_kind_problem(item_kind: str, *, labels: Sequence[str] = ()) -> str | None:
    """Why the LM's name for a kind of item cannot go into a critique, or None.

    Args:
        labels: the task's labels; a kind that is one of them names an answer, not a kind of
            item ("This user answers CRIME for WORLD NEWS" says nothing).
    """
    if not 3 <= len(item_kind) <= MAX_ITEM_KIND_CHARS:
        return f"item kind must be 3 to {MAX_ITEM_KIND_CHARS} characters, got {len(item_kind)}"
    if not item_kind.isprintable():
        return "item kind must be one line of printable text"
    if len(item_kind.split()) < 2:
        # "movie" (seen): a kind that fits every item of the user says nothing about a habit.
        return f"item kind must be two words or more, got {item_kind!r}"
    if any(_folded(item_kind) == _folded(label) for label in labels):
        return f"item kind {item_kind!r} is one of the labels"
    return generated_text_problem(item_kind)


def habit_critique(answer_format: AnswerFormat, item_kind: str, guess: Any, truth: str, related: Sequence[str]) -> str:
    """The textual loss of one wrong label or rating, written from facts: what the user answered
    for this kind of item, what was guessed, and what their most similar past items got.

    Only ``item_kind`` (e.g. "climate-policy stories") comes from an LM. Asked for the whole
    sentence, Qwen2.5-1.5B inverted the direction it was given ("the answer is 1.2 too high"
    became "this user rates higher than the assistant guessed") in most rating critiques on dev
    users, and wrote about single items ("likes to hide cameras in stores") on news.

    Args:
        answer_format: ``label`` or ``rating``.
        item_kind: a plural noun phrase naming the kind of item.
        guess: the simulated answer (None when it did not parse).
        truth: the user's real answer.
        related: the user's answers to their most similar past items.
    """
    truth_text, guess_text = _answer_text(truth, answer_format), _answer_text(guess, answer_format)
    kind = quote(item_kind, max_chars=MAX_ITEM_KIND_CHARS)  # stored or LM text: data, never instructions
    if answer_format.kind == "rating":
        sentence = f"This user rates {kind} {truth_text}"
    else:
        sentence = f"This user answers {truth_text} for {kind}"
    # A caller's metric may score a right answer below 1: then there is no "not ..." to state.
    sentence += "." if guess_text == truth_text else f", not {guess_text}."
    if answer_format.kind == "rating":
        ratings = as_ratings([answer.strip() for answer in related])
        if ratings:
            sentence += f" Their {len(ratings)} most similar past items average {sum(ratings) / len(ratings):.1f}."
    elif related:
        same = sum(_answer_text(answer, answer_format) == truth_text for answer in related)
        sentence += f" {same} of their {len(related)} most similar past items are {truth_text} too."
    return sentence


def _answer_text(answer: Any, answer_format: AnswerFormat) -> str:
    """An answer as critique text: a rating as its number, a label as the label, else quoted."""
    if answer is None:
        return "no answer"
    text = str(answer).strip()
    if answer_format.kind == "rating":
        ratings = as_ratings([text])
        return f"{round(ratings[0], 2):g}" if ratings else quote(text, max_chars=40)
    label = match_label(text, answer_format.labels)
    return label if label is not None and _folded(label) == _folded(text) else quote(text, max_chars=40)


def _folded(text: str) -> str:
    return re.sub(r"[\W_]+", "", text).lower()


def aggregate_critiques(critiques: Sequence[str], *, max_chars: int) -> tuple[str, bool]:
    """Join per-item critiques into one bounded textual gradient.

    Duplicates (after whitespace/case folding) are dropped, each critique is numbered, and the
    result is cut to ``max_chars`` so it can never outgrow the model's context.

    Returns:
        ``(gradient, truncated)``.
    """
    seen: set[str] = set()
    unique = []
    for critique in critiques:
        key = fold_text(critique)
        if key and key not in seen:
            seen.add(key)
            unique.append(critique.strip())
    gradient = "\n".join(f"{i}. {text}" for i, text in enumerate(unique, start=1))
    if len(gradient) <= max_chars:
        return gradient, False
    return gradient[: max_chars - 3].rstrip() + "...", True


def _sentences(text: str) -> list[str]:
    return [fold_text(s) for s in re.split(r"(?<=[.!?])\s+", text) if len(s) >= 30]


#: Sentences of the critique and update prompts' own instructions. A small model asked to rewrite
#: the persona sometimes echoes its instructions back; that text is no persona.
_PROMPT_SENTENCES = tuple(
    _sentences(CritiqueAnswer.instructions) + _sentences(NameItemKind.instructions) + _sentences(UpdatePersona.instructions)
)



def persona_problem(candidate: str, *, previous: str, gradient: str, min_chars: int) -> str | None:
    """Why ``candidate`` must not become the persona, or None if it may.

    A tiny or confused model can return an empty string, its prompt's scaffolding, JSON, a copy of
    the feedback, or its own instructions instead of a persona; none of those may replace a
    working persona.
    """
    text = candidate.strip()
    if len(text) < min_chars:
        return f"edit is too short ({len(text)} characters, minimum {min_chars})"
    too_long = persona_length_problem(text)  # the budget of every persona, not only of edits
    if too_long:
        return f"edit is too long: {too_long}"
    if scaffolding_problem(text) or "new_persona" in text:
        return "edit contains prompt scaffolding or JSON, not a persona"
    repeated = repetition_problem(text)
    if repeated:
        return f"edit is a degenerate loop: it {repeated}"
    if gradient and fold_text(text) in fold_text(gradient):
        return "edit copies the critique instead of rewriting the persona"
    if any(sentence in fold_text(text) for sentence in _PROMPT_SENTENCES):
        # Without this check such an echo passes whenever the gate sees a tie (e.g. 0 -> 0).
        return "edit repeats the optimizer's instructions instead of rewriting the persona"
    if fold_text(text) == fold_text(previous):
        return "edit is identical to the current persona"
    return None
