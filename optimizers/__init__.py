"""The persona-alignment optimizer, installed as ``personaagent.optimizers``."""

from .alignment_utils import aggregate_critiques, default_metric, examples_from_memories, latest_examples
from .continual import ContinualAlignment
from .many_users import compile_users
from .persona_alignment import AlignmentResult, PersonaAlignment

__all__ = [
    "PersonaAlignment",
    "AlignmentResult",
    "compile_users",
    "ContinualAlignment",
    "default_metric",
    "examples_from_memories",
    "latest_examples",
    "aggregate_critiques",
]
