"""How fast the embedded LM answers, against the limit: llama.cpp on the same prompt, no framework.

Run it with ``python benchmarks/bench_runtime.py [--model NAME] [--threads N] [--busy]``. For one
real answer call (a persona-conditioned news-category answer with 5 retrieved memories from the
committed sample, formatted by DSPy's JSONAdapter exactly as the agent sends it) it prints:

* the llama.cpp CPU variant in use and the model;
* the limit: prompt (prefill) tokens/s and generated tokens/s of llama.cpp called directly on
  the same token sequence, with no prefix reuse;
* our call through DSPy (adapter, grammar-constrained JSON, parsing): seconds, tokens in and out,
  and the ratio of its seconds to the limit's seconds for the same tokens.

``--busy`` starts one process that spins on a core for the whole run, to measure what a second job
on a 2-core machine does to each thread setting (OpenMP workers spin-wait for a descheduled peer).
Set ``OMP_WAIT_POLICY`` in the environment to compare wait policies.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import personaagent  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP before dspy loads litellm)
import dspy

from personaagent.actions import format_memories
from personaagent.config import Settings
from personaagent.evaluation import load_task
from personaagent.records import Memory
from personaagent.runtime import adapter_for, build_lm, load_cpu_backend
from personaagent.signatures import RESPOND_TASK, response_signature

PERSONA = (
    "You are a personal assistant. You answer the way this user would, following their preferences.\n"
    "Your answers to 40 past items: POLITICS 55%, WORLD NEWS 20%, ENVIRONMENT 10%."
)
#: Tokens sampled per generation-rate run (the rate is over the 47 gaps between them).
GENERATED_TOKENS = 48


def _spin() -> None:
    while True:
        pass


def answer_inputs() -> tuple[type[dspy.Signature], dict[str, str]]:
    """A real answer call: a dev news user's latest item and their 5 most recent other items."""
    task = load_task("news")
    example = task.examples("dev", num_users=1)[0]
    memories = [Memory(memory_id=str(i), interaction=item) for i, item in enumerate(example.profile[-5:])]
    signature = response_signature(task.spec.answer_format).with_instructions(f"{PERSONA}\n\n{RESPOND_TASK}")
    return signature, {"query": example.query, "context": format_memories(memories)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a packaged local model name (default: the default model)")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the engine's)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--busy", action="store_true", help="keep one core busy with another process")
    args = parser.parse_args()

    spinner = None
    if args.busy:
        spinner = multiprocessing.Process(target=_spin, daemon=True)
        spinner.start()
    try:
        settings = Settings(lm=f"local/{args.model}" if args.model else "local")
        lm = build_lm(settings)
        if args.threads is not None:
            lm.engine.threads = args.threads
        # Every token must be prefilled in both measurements: no saved prefix may be restored.
        lm.engine.prefix_cache_bytes = 0
        variant = load_cpu_backend()
        llama, formatter = lm.engine._load()
        print(f"model {settings.local_model}, CPU variant {variant}, threads {llama.n_threads}, "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, busy core: {args.busy}")

        signature, inputs = answer_inputs()
        adapter = adapter_for(settings, lm)
        messages = adapter.format(signature, demos=[], inputs=inputs)
        prompt = formatter(messages=messages).prompt
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

        # The limit: llama.cpp on the same tokens. reset() drops the KV cache, so all are prefilled.
        prefill_rates, generation_rates = [], []
        for _ in range(args.repeats):
            llama.reset()
            started = time.perf_counter()
            llama.create_completion(prompt=tokens, max_tokens=1, temperature=0.0)
            prefill_seconds = time.perf_counter() - started
            prefill_rates.append(len(tokens) / prefill_seconds)
            # Generation: llama.cpp's token loop with no stop condition (create_completion stops on
            # any end-of-generation token, and Qwen-Coder has several besides the two that a
            # logit bias can name), timed from the first sampled token to the last.
            llama.reset()
            stamps = []
            for count, _token in enumerate(llama.generate(tokens, temp=0.0), start=1):
                stamps.append(time.perf_counter())
                if count == GENERATED_TOKENS:
                    break
            generation_rates.append((GENERATED_TOKENS - 1) / (stamps[-1] - stamps[0]))
        prefill_rate = max(prefill_rates)
        generation_rate = max(generation_rates)
        print(f"limit (llama.cpp, {len(tokens)}-token prompt): prompt {prefill_rate:.1f} tok/s, "
              f"generation {generation_rate:.1f} tok/s")

        # Ours: the same call through DSPy, KV cache dropped first so nothing is reused.
        predictor = dspy.Predict(signature)
        timings = []
        with dspy.context(lm=lm, adapter=adapter):
            for _ in range(args.repeats):
                llama.reset()
                before = len(lm.history)
                started = time.perf_counter()
                answer = predictor(**inputs).answer
                seconds = time.perf_counter() - started
                usage = lm.history[before]["usage"]
                timings.append((seconds, usage["prompt_tokens"], usage["completion_tokens"]))
        seconds, prompt_tokens, completion_tokens = min(timings)
        limit = prompt_tokens / prefill_rate + completion_tokens / generation_rate
        print(f"ours (DSPy JSONAdapter + grammar): {seconds:.2f} s for {prompt_tokens} prompt + {completion_tokens} "
              f"generated tokens (answer {answer!r}); limit for the same tokens {limit:.2f} s; "
              f"ratio {seconds / limit:.2f}x")
    finally:
        if spinner is not None:
            spinner.terminate()


if __name__ == "__main__":
    main()
