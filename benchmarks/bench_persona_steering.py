"""Can a persona steer the answer? Measured on dev news users, memories as context vs as demos.

Run it with ``python benchmarks/bench_persona_steering.py [--model NAME] [--users 20]``.

For each dev user's held-out articles, the agent answers twice with the seed persona (generic
role + computed facts), once with the retrieved memories given only as context and once also as
few-shot demonstrations. Then, for each article, it answers again with a persona that adds one
*true habit* of this user: the category they really filed it under, with up to three of their
own earlier headlines they filed under it ("You file stories like these under ENVIRONMENT: ...").
It prints, per presentation, how many answers the habit changed and how many of the changes went
to the right category: a persona can only steer if the habit moves answers.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import personaagent  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP before dspy loads litellm)

from personaagent.agent import PersonaAgent
from personaagent.config import Settings
from personaagent.evaluation import load_task
from personaagent.memory.semantic import history_facts
from personaagent.persona import seed_persona_text
from personaagent.records import Memory, Profile
from personaagent.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a packaged local model name (default: the default model)")
    parser.add_argument("--users", type=int, default=20, help="dev users (3 articles each)")
    args = parser.parse_args()

    task = load_task("news")
    examples = task.examples("dev", num_users=args.users)
    lm_name = f"local/{args.model}" if args.model else "local"
    counts = {mode: {"right": 0, "changed": 0, "changed_right": 0, "habit_right": 0} for mode in ("context", "demos")}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as home, Workspace(Settings(home=home, store=":memory:", lm=lm_name)) as ws:
        for user_id in {e.user_id for e in examples}:
            ws.episodic.add(task.profile(user_id))
        for example in examples:
            memories = [Memory(memory_id=str(i), interaction=x) for i, x in enumerate(example.profile)]
            profile = Profile(user_id=example.user_id, text="", facts=history_facts(memories), num_interactions=len(memories))
            seed = seed_persona_text(profile)
            same = [x.query.split("\n")[0] for x in example.profile if x.response == example.gold][-3:]
            habit = f"You file stories like these under {example.gold}: " + "; ".join(same) if same else (
                f"You file stories like this one under {example.gold}."
            )
            for mode in ("context", "demos"):
                agent = PersonaAgent(example.user_id, workspace=ws, answer_format=task.spec.answer_format,
                                     use_actions=False, memories_as=mode)
                before = agent.with_persona(seed)(example.query).answer if hasattr(agent, "with_persona") else None
                if before is None:
                    agent.set_persona(seed)
                    before = agent(example.query).answer
                    agent.set_persona(f"{seed}\n{habit}")
                    after = agent(example.query).answer
                else:
                    after = agent.with_persona(f"{seed}\n{habit}")(example.query).answer
                tally = counts[mode]
                tally["right"] += before == example.gold
                tally["habit_right"] += after == example.gold
                tally["changed"] += after != before
                tally["changed_right"] += after != before and after == example.gold
    n = len(examples)
    print(f"model {ws.settings.local_model}: {n} dev news articles of {args.users} users, "
          f"{time.perf_counter() - started:.0f} s")
    for mode, tally in counts.items():
        print(f"memories as {mode:7}: seed persona right {tally['right']}/{n}; with the true habit right "
              f"{tally['habit_right']}/{n}; answers changed {tally['changed']}, of which to the truth "
              f"{tally['changed_right']}")


if __name__ == "__main__":
    main()
