"""personaagent: per-user personas compiled from each user's history, as a DSPy program."""

import os
from pkgutil import extend_path

# The subpackages signatures/, optimizers/ and data/ live beside this folder and are installed
# into personaagent/ (pyproject's package-dir). Run from a checkout's root (`python cli.py`,
# `python -m pytest`), this folder comes first on sys.path and lacks them; extend_path adds the
# installed copy of the package, where they are.
__path__ = extend_path(__path__, __name__)

# litellm (imported by dspy) fetches its model price map from GitHub at import time unless told
# to use the copy it ships; without this, every import waits on, or fails without, the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from personaagent.agent import PersonaAgent  # noqa: E402  (the variable above must be set first)
from personaagent.config import Settings, load_settings  # noqa: E402
from personaagent.errors import PersonaAgentError, PersonaConflict  # noqa: E402
from personaagent.optimizers import (  # noqa: E402
    AlignmentResult,
    ContinualAlignment,
    PersonaAlignment,
    commit_aligned,
    compile_users,
)
from personaagent.persona import PersonaBook  # noqa: E402
from personaagent.records import AnswerFormat, Interaction, Memory, Persona  # noqa: E402
from personaagent.traces import TraceReader, UserTrace, format_trace  # noqa: E402
from personaagent.workspace import Workspace  # noqa: E402

__all__ = [
    # the program and where it lives
    "PersonaAgent",
    "Workspace",
    "Settings",
    "load_settings",
    # compiling personas (DSPy optimizer), many users, continual alignment
    "PersonaAlignment",
    "AlignmentResult",
    "compile_users",
    "commit_aligned",
    "ContinualAlignment",
    # reading what a compile did
    "TraceReader",
    "UserTrace",
    "format_trace",
    # records and errors
    "PersonaBook",
    "AnswerFormat",
    "Interaction",
    "Memory",
    "Persona",
    "PersonaAgentError",
    "PersonaConflict",
]
