"""``python -m personaagent``: the same command line as the ``personaagent`` script."""

from personaagent.cli import cli

if __name__ == "__main__":
    cli(prog_name="personaagent")
