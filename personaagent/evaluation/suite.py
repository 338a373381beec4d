"""One evaluation run: every requested method, baselines included, on the same users and LM.

The run works in a fresh in-process memory store and its own folder, so evaluating never touches
a user's real memories or personas. Results are written as ``results.json`` and ``results.md``,
and each method's answers as ``predictions-<method>.jsonl``. ``paired.md`` compares the reference
method (PersonaAgent when it ran) with every other method query by query, and ``alignment.md``
says what alignment did with its persona edits (proposed, refused, accepted, rejected, and why).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from personaagent.config import MEMORY
from personaagent.errors import InvalidRecord, UnknownMethod
from personaagent.evaluation.baselines import baselines_for
from personaagent.evaluation.methods import LLM_METHODS, build_method, method_slug
from personaagent.evaluation.metrics import format_paired_table, paired_comparison
from personaagent.evaluation.runner import MethodAnswer, format_results_table, query_losses, run_method
from personaagent.evaluation.tasks import TaskExample
from personaagent.records import EvalResult, Interaction
from personaagent.traces import EditOutcomes, TraceReader
from personaagent.workspace import Workspace

__all__ = ["BASELINES", "DEFAULT_METHODS", "run_suite"]

logger = logging.getLogger(__name__)

#: Selects every plain non-LLM baseline that fits the task.
BASELINES = "baselines"
#: What ``personaagent eval`` runs by default: the baselines and every LLM method.
DEFAULT_METHODS: tuple[str, ...] = (BASELINES, *LLM_METHODS)


def run_suite(
    examples: Sequence[TaskExample],
    workspace: Workspace,
    out_dir: Path,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    pool: Sequence[Interaction] | None = None,
    num_recent: int = 3,
    iterations: int = 1,
    on_result: Callable[[EvalResult], None] | None = None,
) -> list[EvalResult]:
    """Evaluate ``methods`` on ``examples`` and write the results table.

    Args:
        examples: held-out queries of one task, each with its user's earlier history as profile
            (``Task.examples("test")`` for a sample task, ``read_lamp(...).examples`` for LaMP).
        workspace: provides the LM and the embedder; its store and files are not used.
        out_dir: where results, answers, and the methods' traces and personas go.
        methods: ``"baselines"`` and/or names from ``LLM_METHODS``. Defaults to all.
        pool: interactions the global baselines may learn from (never the queries). Defaults to
            the examples' profiles.
        num_recent: alignment batch size n. Defaults to 3.
        iterations: alignment iterations. Defaults to 1.
        on_result: called with each method's result as soon as it is ready.
    """
    unknown = [name for name in methods if name != BASELINES and name not in LLM_METHODS]
    if unknown:
        raise UnknownMethod(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(DEFAULT_METHODS)}")
    if not examples:
        raise InvalidRecord("no examples to evaluate: every question or user was skipped")
    spec = examples[0].spec
    if pool is None:
        pool = list({i.interaction_id: i for e in examples for i in e.profile}.values())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = workspace.settings.model_copy(update={"home": out_dir, "store": MEMORY})
    results: list[EvalResult] = []
    losses: dict[str, list[float]] = {}
    edit_outcomes: list[str] = []
    with Workspace(settings, lm=workspace.lm, embedder=workspace.embedder) as run:
        for name in methods:
            chosen = (
                baselines_for(spec, pool)
                if name == BASELINES
                else [build_method(name, run, spec, folder=out_dir, num_recent=num_recent, iterations=iterations)]
            )
            for method in chosen:
                logger.info("evaluating %s on %d %s queries", method.name, len(examples), spec.name)
                answers: list[str] = []
                with open(out_dir / f"predictions-{method_slug(method.name)}.jsonl", "w", encoding="utf-8") as saved:

                    def keep(example: TaskExample, prediction: MethodAnswer) -> None:
                        answers.append(prediction.text)
                        _save(saved, example, prediction)

                    result = run_method(examples, method, on_prediction=keep)
                results.append(result)
                losses[method.name] = query_losses(examples, answers)
                if on_result is not None:
                    on_result(result)
                _write(out_dir, results)
                _write_paired(out_dir, losses, spec.kind)
                # What alignment did with its edits, for a method that aligned (its traces are in
                # its own folder); read once, when the method is done.
                reader = TraceReader(out_dir / method_slug(method.name) / "traces")
                traces = [trace for run_id in reader.run_ids() for trace in reader.run(run_id)]
                if traces:
                    edit_outcomes.append(f"- {method.name}: {EditOutcomes.of(traces).describe()}")
                    (out_dir / "alignment.md").write_text("\n".join(edit_outcomes) + "\n", encoding="utf-8")
    return results


#: The method the paired table compares with every other, when it ran.
_REFERENCE_METHOD = "PersonaAgent"


def _write_paired(out_dir: Path, losses: dict[str, list[float]], kind: str) -> None:
    reference = _REFERENCE_METHOD if _REFERENCE_METHOD in losses else next(iter(losses))
    comparisons = [
        paired_comparison(reference, losses[reference], name, other)
        for name, other in losses.items()
        if name != reference
    ]
    if comparisons:
        loss_name = "error rate" if kind == "label" else "MAE"
        (out_dir / "paired.md").write_text(format_paired_table(comparisons, loss_name=loss_name) + "\n", encoding="utf-8")


def _save(handle: TextIO, example: TaskExample, prediction: MethodAnswer) -> None:
    # What each method answered, beside the truth, for error analysis.
    row = {"example_id": example.example_id, "user_id": example.user_id, "gold": example.gold,
           "answer": prediction.text, "lm_calls": prediction.usage.calls, "tokens": prediction.usage.tokens}
    handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write(out_dir: Path, results: list[EvalResult]) -> None:
    # Rewritten after every method, so a long run that is stopped keeps what it finished.
    (out_dir / "results.json").write_text(
        json.dumps([r.model_dump(mode="json") for r in results], indent=2), encoding="utf-8"
    )
    (out_dir / "results.md").write_text(format_results_table(results) + "\n", encoding="utf-8")
