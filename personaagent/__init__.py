"""personaagent: per-user personas compiled from each user's history, as a DSPy program."""

import os

# litellm (imported by dspy) fetches its model price map from GitHub at import time unless told
# to use the copy it ships; without this, every import waits on, or fails without, the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from personaagent.agent import PersonaAgent  # noqa: E402  (the variable above must be set first)
from personaagent.config import Settings, load_settings  # noqa: E402
from personaagent.persona import PersonaBook  # noqa: E402
from personaagent.records import AnswerFormat, Interaction, Persona  # noqa: E402
from personaagent.workspace import Workspace  # noqa: E402

__all__ = [
    "PersonaAgent",
    "Workspace",
    "Settings",
    "load_settings",
    "PersonaBook",
    "AnswerFormat",
    "Interaction",
    "Persona",
]
