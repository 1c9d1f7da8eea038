"""What a DukeNET process says about itself at start: a database URL fit to print."""

from __future__ import annotations


def printable_database_url(url: str) -> str:
    """Return ``url`` with its password masked, to log where a process keeps its data."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
