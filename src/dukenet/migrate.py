"""Schema migrations through Alembic (the only way the schema changes)."""

from __future__ import annotations

import functools
from typing import Any

from alembic import command
from alembic.config import Config

from dukenet.config import Pooler


def alembic_config(database_url: str, *, pooler: Pooler = "none") -> Config:
    """Return an Alembic config for the packaged migrations and ``database_url`` (reached
    through ``pooler``, ``db.create_engine``'s)."""
    config = Config()
    config.set_main_option("script_location", "dukenet:migrations")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.set_main_option("dukenet.pooler", pooler)
    return config


def upgrade(database_url: str, revision: str = "heads", *, pooler: Pooler = "none") -> None:
    """Upgrade the database to ``revision``, by default every head (blocking; run it outside the
    event loop)."""
    command.upgrade(alembic_config(database_url, pooler=pooler), revision)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any | None
) -> bool:
    """Alembic's ``include_object`` hook: leave alone tables that are in the database but not in
    DukeNET's models (Optuna keeps its studies in the same database, ``learning.tuning``), so
    autogenerate never proposes dropping them."""
    return not (type_ == "table" and reflected and compare_to is None)


@functools.cache
def head_revisions() -> frozenset[str]:
    """Return the revisions of the packaged migrations' heads (reads the scripts once, no
    database; blocking)."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())
