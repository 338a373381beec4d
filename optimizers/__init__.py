"""The persona-alignment optimizer, installed as ``personaagent.optimizers``."""

from .alignment_utils import (
    GateVerdict,
    PersonaProgram,
    aggregate_critiques,
    default_metric,
    gate_verdict,
    latest_examples,
)
from .continual import ContinualAlignment
from .many_users import commit_aligned, compile_users
from .persona_alignment import AlignmentResult, PersonaAlignment

__all__ = [
    "PersonaAlignment",
    "AlignmentResult",
    "PersonaProgram",
    "compile_users",
    "commit_aligned",
    "ContinualAlignment",
    "default_metric",
    "gate_verdict",
    "GateVerdict",
    "latest_examples",
    "aggregate_critiques",
]
