import click

@click.group()
def cli():
    """personaagent"""

