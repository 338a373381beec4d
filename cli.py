"""Run the personaagent command line from a checkout: ``python cli.py --help``.

The commands live in ``personaagent/cli.py`` (installed as the ``personaagent`` script); this
launcher only calls them, so the module exists once.
"""

from personaagent.cli import cli

if __name__ == "__main__":
    cli(prog_name="personaagent")
