"""``python -m dukenet`` runs the CLI."""

from dukenet.cli import app

app()
