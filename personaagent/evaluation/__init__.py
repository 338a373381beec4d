"""LaMP-style evaluation: tasks from real data, LaMP readers, metrics, baselines and the runner."""

from personaagent.evaluation.baselines import baselines_for, tfidf_embed
from personaagent.evaluation.lamp import LampData, read_lamp
from personaagent.evaluation.metrics import match_label, parse_rating
from personaagent.evaluation.runner import Method, Prediction, evaluate, format_results_table
from personaagent.evaluation.tasks import (
    TASK_NAMES,
    Task,
    TaskExample,
    TaskSpec,
    build_news_task,
    build_ratings_task,
    load_examples,
    load_task,
)

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
    "Prediction",
    "evaluate",
    "format_results_table",
    "baselines_for",
    "tfidf_embed",
]
