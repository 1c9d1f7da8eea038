"""``python -m dukenet`` runs the CLI."""

from dukenet.cli import app

if __name__ == "__main__":  # not when a spawned worker (serve --workers) imports this module
    app()
