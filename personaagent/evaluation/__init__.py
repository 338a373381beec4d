"""LaMP-style evaluation: tasks from real data, LaMP readers, metrics, baselines and the runner."""

from personaagent.evaluation.baselines import baselines_for, tfidf_embed
from personaagent.evaluation.lamp import LampData, read_lamp
from personaagent.evaluation.metrics import match_label, parse_rating
from personaagent.evaluation.runner import Method, MethodAnswer, format_results_table, run_method
from personaagent.evaluation.tasks import (
    TASK_NAMES,
    Task,
    TaskExample,
    TaskSpec,
    load_examples,
    load_task,
)
from personaagent.evaluation.sources import build_news_task, build_ratings_task

__all__ = [
    "TASK_NAMES",
    "Task",
    "TaskExample",
    "TaskSpec",
    "load_task",
    "load_examples",
    "build_news_task",
    "build_ratings_task",
    "LampData",
    "read_lamp",
    "match_label",
    "parse_rating",
    "Method",
    "MethodAnswer",
    "run_method",
    "format_results_table",
    "baselines_for",
    "tfidf_embed",
]
