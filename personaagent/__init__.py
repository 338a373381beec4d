"""personaagent: per-user personas compiled from each user's history, as a DSPy program."""

import os

# litellm (imported by dspy) fetches its model price map from GitHub at import time unless told
# to use the copy it ships; without this, every import waits on, or fails without, the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
