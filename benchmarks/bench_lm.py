"""Benchmark the embedded local LM: raw token throughput, and how often PersonaAgent's own
signatures parse when the tiny model answers them.

Run it with ``python benchmarks/bench_lm.py [--calls-per-task 20]``. It prints:

* prompt tokens/s (prefill) and generated tokens/s, free and grammar-constrained, measured on the
  engine directly with prompts that cannot reuse llama.cpp's prefix cache;
* for three realistic signatures (a persona-conditioned label choice with retrieved examples, a
  1-5 rating, a free-text critique): parse successes n/N, valid answers, seconds and tokens per call.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import personaagent  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP before dspy loads litellm)
import dspy
from dspy.lm15 import Config, Message, Request

from personaagent.config import Settings
from personaagent.records import AnswerFormat
from personaagent.runtime import adapter_for, build_lm
from personaagent.signatures import RESPOND_TASK, CritiqueAnswer, response_signature

TAGS = (
    "sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia", "dark comedy",
    "classic", "psychology", "fantasy", "romance", "thought-provoking", "social commentary",
    "violence", "true story",
)

MOVIES = [
    ("A hacker learns that reality is a simulation run by machines and joins a rebellion.", "sci-fi"),
    ("Two hitmen, a boxer and a gangster's wife cross paths in interlocking Los Angeles stories.", "violence"),
    ("A young wizard attends a school of magic and confronts the dark lord who killed his parents.", "fantasy"),
    ("In a totalitarian state, a man rewrites history for the Party and falls in love.", "dystopia"),
    ("A pilot and a stranger spend one night walking through Vienna, talking about life.", "romance"),
    ("A weatherman relives the same day over and over in a small town.", "comedy"),
    ("A man with short-term memory loss hunts his wife's killer using tattoos and photographs.", "twist ending"),
    ("The true story of a stockbroker whose firm defrauded investors in the 1990s.", "true story"),
    ("A psychiatrist treats a boy who claims he can see dead people.", "psychology"),
    ("An adaptation of Tolstoy's novel about an aristocrat's affair in imperial Russia.", "based on a book"),
]

HISTORY = [
    ("A crew travels through a wormhole to find a new home for humanity.", "sci-fi"),
    ("A lonely writer falls in love with his computer's operating system.", "thought-provoking"),
    ("Robots rise against humans after a military AI becomes self-aware.", "sci-fi"),
    ("A family of con artists infiltrates a wealthy household.", "social commentary"),
    ("A hobbit carries a ring to a volcano to destroy it.", "fantasy"),
    ("A boxer from Philadelphia gets a shot at the heavyweight title.", "classic"),
]

REVIEWS = [
    ("The blender is loud but crushes ice in seconds. Worth the price.", 4),
    ("Stopped working after two days and support never answered.", 1),
    ("Does the job. Nothing special, a bit flimsy.", 3),
    ("Absolutely love these headphones, the sound is incredible and they are comfortable.", 5),
    ("The color faded after one wash and the seams came apart.", 2),
    ("Great book, though the middle drags a little.", 4),
    ("Not as described: smaller than the photos, cheap plastic.", 2),
    ("Perfect gift, my daughter uses it every day.", 5),
    ("Average coffee maker; the carafe drips when pouring.", 3),
    ("Worst purchase this year. Broke on the first use.", 1),
]

PERSONA_LABELS = (
    "You are a film enthusiast who tags movies for a personal catalogue. You love science fiction "
    "and ideas-driven stories, and you tag a movie by its most striking theme rather than its genre."
)
PERSONA_RATINGS = (
    "You are a practical shopper who values durability and honest descriptions. You rate harshly "
    "when a product breaks or is misdescribed, and generously when it simply works well."
)


@dataclass
class TaskResult:
    name: str
    calls: int = 0
    parsed: int = 0
    valid: int = 0
    correct: int = 0
    seconds: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: list[str] = field(default_factory=list)


def throughput(lm: dspy.LM, repeats: int) -> dict[str, float]:
    """Prefill and generation rates measured on the engine, bypassing the adapter."""
    filler = " ".join(f"{movie} It is tagged {tag}." for movie, tag in MOVIES * 2)

    def run(text: str, max_tokens: int, response_format: dict[str, Any] | None) -> tuple[float, int, int]:
        request = Request(
            model=lm.model,
            messages=(Message.user(text),),
            config=Config(max_tokens=max_tokens, temperature=0.0, response_format=response_format),
        )
        started = time.perf_counter()
        response = lm.engine.complete(request)
        return time.perf_counter() - started, response.usage.input_tokens, response.usage.output_tokens

    lm.engine.complete(Request(model=lm.model, messages=(Message.user("warm up"),), config=Config(max_tokens=1)))
    # A different first word each time defeats llama.cpp's prefix reuse, so every token is prefilled.
    prefill = [run(f"Note {i}: {filler}\nSummarise.", 1, None) for i in range(repeats)]
    prompt_rate = sum(p for _, p, _ in prefill) / sum(s for s, _, _ in prefill)

    def generation_rate(response_format: dict[str, Any] | None, ask: str) -> float:
        runs = [run(f"Request {i}. {ask}", 128, response_format) for i in range(repeats)]
        generating = sum(s - p / prompt_rate for s, p, _ in runs)
        return sum(c for _, _, c in runs) / generating

    return {
        "prompt_tokens_per_s": prompt_rate,
        "generated_tokens_per_s": generation_rate(None, "Write a long story about a dragon who learns to cook."),
        "generated_tokens_per_s_with_json_grammar": generation_rate(
            {"type": "json_object"}, "Describe a dragon as a JSON object with many detailed fields."
        ),
    }


def run_task(
    name: str,
    lm: dspy.LM,
    predictor: dspy.Module,
    cases: list[dict[str, Any]],
    check: Callable[[dspy.Prediction, dict[str, Any]], tuple[bool, bool]],
) -> TaskResult:
    result = TaskResult(name)
    for case in cases:
        inputs = {key: value for key, value in case.items() if not key.startswith("_")}
        before = len(lm.history)
        started = time.perf_counter()
        try:
            prediction = predictor(**inputs)
        except Exception as exc:  # a parse failure is what we measure, so count any failure
            prediction = None
            result.failures.append(f"{type(exc).__name__}: {str(exc)[:160]}")
        result.seconds.append(time.perf_counter() - started)
        result.calls += 1
        for entry in lm.history[before:]:
            result.prompt_tokens += entry["usage"].get("prompt_tokens", 0)
            result.completion_tokens += entry["usage"].get("completion_tokens", 0)
        if prediction is not None:
            result.parsed += 1
            valid, correct = check(prediction, case)
            result.valid += valid
            result.correct += correct
    return result


def label_cases(n: int) -> list[dict[str, Any]]:
    cases = []
    for i, (movie, tag) in zip(range(n), itertools.cycle(MOVIES)):
        examples = [HISTORY[(i + k) % len(HISTORY)] for k in range(3)]
        context = "\n".join(f"{query} => {answer}" for query, answer in examples)
        cases.append({"query": f"Which tag fits this movie? {movie}", "context": context, "_truth": tag})
    return cases


def rating_cases(n: int) -> list[dict[str, Any]]:
    cases = []
    for i, (review, stars) in zip(range(n), itertools.cycle(REVIEWS)):
        past = [REVIEWS[(i + k + 3) % len(REVIEWS)] for k in range(3)]
        context = "\n".join(f"{text} => {score}" for text, score in past)
        cases.append({"query": f"What score from 1 to 5 did you give? Review: {review}", "context": context,
                      "_truth": stars})
    return cases


def critique_cases(n: int) -> list[dict[str, Any]]:
    cases = []
    for i, (movie, tag) in zip(range(n), itertools.cycle(MOVIES)):
        wrong = TAGS[(TAGS.index(tag) + 1 + i) % len(TAGS)]
        cases.append({
            "persona": PERSONA_LABELS,
            "query": f"Which tag fits this movie? {movie}",
            "assistant_answer": wrong,
            "user_answer": tag,
            "feedback": f"wrong: the assistant said '{wrong}' but the user tagged it '{tag}'",
        })
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls-per-task", type=int, default=20, help="calls per signature (3 signatures)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per throughput measurement")
    args = parser.parse_args()

    settings = Settings()
    lm = build_lm(settings)
    started = time.perf_counter()
    lm.engine.complete(Request(model=lm.model, messages=(Message.user("hi"),), config=Config(max_tokens=1)))
    print(f"model: {lm.engine.model_path.name}, load {time.perf_counter() - started:.2f}s, "
          f"context {settings.local_context_tokens}, max_tokens {settings.lm_max_tokens}")

    for key, value in throughput(lm, args.repeats).items():
        print(f"{key}: {value:.1f}")

    label_sig = response_signature(AnswerFormat(kind="label", labels=TAGS))
    rating_sig = response_signature(AnswerFormat(kind="rating"))
    tasks = [
        ("label (15 tags, persona, 3 examples)", dspy.Predict(label_sig.with_instructions(
            f"{PERSONA_LABELS}\n\n{RESPOND_TASK}")), label_cases(args.calls_per_task),
         lambda p, c: (p.answer in TAGS, p.answer == c["_truth"])),
        ("rating 1-5 (persona, 3 examples)", dspy.Predict(rating_sig.with_instructions(
            f"{PERSONA_RATINGS}\n\n{RESPOND_TASK}")), rating_cases(args.calls_per_task),
         lambda p, c: (1 <= p.answer <= 5, round(p.answer) == c["_truth"])),
        ("critique (free text)", dspy.Predict(CritiqueAnswer), critique_cases(args.calls_per_task),
         lambda p, c: (bool(p.critique.strip()), False)),
    ]
    results = []
    with dspy.context(lm=lm, adapter=adapter_for(settings, lm)):
        for name, predictor, cases, check in tasks:
            results.append(run_task(name, lm, predictor, cases, check))

    print(f"\n{'signature':40} {'parsed':>8} {'valid':>7} {'correct':>8} {'s/call':>7} {'p95 s':>6} "
          f"{'prompt tok':>10} {'gen tok':>8}")
    for r in results:
        p95 = sorted(r.seconds)[max(0, round(0.95 * len(r.seconds)) - 1)]
        print(f"{r.name:40} {r.parsed:>3}/{r.calls:<4} {r.valid:>3}/{r.calls:<3} {r.correct:>3}/{r.calls:<4} "
              f"{statistics.mean(r.seconds):>7.2f} {p95:>6.2f} {r.prompt_tokens / r.calls:>10.0f} "
              f"{r.completion_tokens / r.calls:>8.1f}")
    total = sum(r.calls for r in results)
    parsed = sum(r.parsed for r in results)
    print(f"\nparse success: {parsed}/{total}; seconds/call overall: "
          f"{sum(sum(r.seconds) for r in results) / total:.2f}")
    for r in results:
        for failure in r.failures[:3]:
            print(f"  {r.name}: {failure}")


if __name__ == "__main__":
    main()
