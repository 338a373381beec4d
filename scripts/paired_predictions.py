"""Compare methods query by query across evaluation runs, on the queries they all answered.

Usage::

    python scripts/paired_predictions.py news RUN_A/predictions-personaagent.jsonl \
        RUN_B/predictions-rag.jsonl RUN_B/predictions-w-o-alignment.jsonl ...

The first file is the reference; each other file is paired with it on the example ids both hold
(`personaagent eval` writes one ``predictions-<method>.jsonl`` per method). Losses are parsed as
the evaluation parses answers (``query_losses``), and the table is the one ``paired.md`` holds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from personaagent.evaluation import load_task
from personaagent.evaluation.metrics import format_paired_table, paired_comparison
from personaagent.evaluation.runner import query_losses


def main(task_name: str, reference: Path, others: list[Path]) -> None:
    task = load_task(task_name)
    examples = {e.example_id: e for split in ("dev", "test") for e in task.examples(split)}

    def answers(path: Path) -> dict[str, str]:
        rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        return {row["example_id"]: row["answer"] for row in rows}

    def name(path: Path) -> str:
        return f"{path.parent.name}/{path.stem.removeprefix('predictions-')}"

    base = answers(reference)
    comparisons = []
    for other_path in others:
        other = answers(other_path)
        shared = [example_id for example_id in base if example_id in other]
        chosen = [examples[example_id] for example_id in shared]
        comparisons.append(
            paired_comparison(
                name(reference), query_losses(chosen, [base[i] for i in shared]),
                name(other_path), query_losses(chosen, [other[i] for i in shared]),
            )
        )
    loss_name = "error rate" if task.spec.kind == "label" else "MAE"
    print(format_paired_table(comparisons, loss_name=loss_name))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
