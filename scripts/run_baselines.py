"""Print the non-LLM baselines' results as a markdown table: the numbers LLM methods must beat.

Usage:
    python scripts/run_baselines.py [--split test] [--source SOURCE] [--k 5]

Without ``--source`` it runs on the committed samples in data/; with it, on the full
``SOURCE/huffpost`` and ``SOURCE/movielens`` data (see scripts/make_samples.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from personaagent.evaluation import (
    baselines_for,
    build_news_task,
    build_ratings_task,
    run_method,
    format_results_table,
    load_task,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("dev", "test"), default="test")
    parser.add_argument("--source", type=Path, help="full source data instead of the committed samples")
    parser.add_argument("--k", type=int, default=5, help="neighbours for the kNN baselines")
    parser.add_argument("--queries-per-user", type=int, default=3)
    args = parser.parse_args()

    if args.source:
        tasks = [
            build_news_task(args.source / "huffpost", queries_per_user=args.queries_per_user),
            build_ratings_task(args.source / "movielens", queries_per_user=args.queries_per_user),
        ]
    else:
        tasks = [load_task(name, queries_per_user=args.queries_per_user) for name in ("news", "ratings")]
    results = []
    for task in tasks:
        examples = task.examples(args.split)
        for method in baselines_for(task.spec, task.profile_pool(), k=args.k):
            results.append(run_method(examples, method))
    print(format_results_table(results))


if __name__ == "__main__":
    main()
