"""The committed samples of real data (see README.md here), installed as ``personaagent.data``."""
