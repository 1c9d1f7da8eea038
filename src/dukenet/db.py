"""Engine and session factories for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from dukenet.config import Pooler, Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10.0


def is_sqlite(url: str) -> bool:
    """Return True when ``url`` names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def ensure_private_sqlite(url: str) -> None:
    """Create a SQLite database's directory (0700) and empty file (0600) if missing, so that
    only the owner can read them (WAL and shared-memory files inherit the file's mode)."""
    database = make_url(url).database
    if not is_sqlite(url) or not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def create_engine(url: str, *, echo: bool = False, pooler: Pooler = "none") -> AsyncEngine:
    """Create an async engine; on SQLite enable WAL, foreign keys and a busy timeout.

    The SQLite file's parent directory is created if missing (owner-only, 0700) and the file
    itself is owner-only (0600). SQL parameters are never rendered in errors or logs. With
    ``pooler="pgbouncer"`` (PostgreSQL behind PgBouncer in transaction mode) no prepared
    statement is reused after its query and none shares a name with another: see
    :func:`pgbouncer_connect_args`.
    """
    # hide_parameters: errors and logs never show bound values (password and API-key hashes)
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if is_sqlite(url):
        ensure_private_sqlite(url)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        kwargs["pool_size"] = 10
        kwargs["max_overflow"] = 20
        kwargs["pool_pre_ping"] = True
        # Fail a connection attempt to an unreachable server in seconds (asyncpg waits 60 s).
        kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT_S}
        if pooler == "pgbouncer":
            kwargs["connect_args"].update(pgbouncer_connect_args())
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        _configure_sqlite(engine)
    return engine


def engine_for(settings: Settings) -> AsyncEngine:
    """Create the engine ``settings`` describe: their database URL, behind their pooler."""
    return create_engine(settings.resolved_database_url, pooler=settings.database_pooler)


def pgbouncer_connect_args() -> dict[str, Any]:
    """Return the asyncpg ``connect_args`` for PgBouncer in transaction mode (SQLAlchemy's
    asyncpg dialect docs, "Prepared Statement Name with PGBouncer").

    PgBouncer before 1.21 hands each transaction whichever server connection is free, so a
    statement prepared in one transaction may be missing (``prepared statement
    "__asyncpg_stmt_1__" does not exist``) or already taken by another client (``... already
    exists``) in the next. Hence: asyncpg's statement cache off (``statement_cache_size=0``),
    SQLAlchemy's too (``prepared_statement_cache_size=0``), and a unique name for every
    statement SQLAlchemy prepares. The engine's own pool stays: its connections are to
    PgBouncer, which multiplexes them onto its few server connections.
    """
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
    }


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # aiosqlite opens transactions itself; take over so BEGIN IMMEDIATE serialises writers.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return a session factory whose objects stay usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


T = TypeVar("T")

# SQLSTATEs of errors a retry can cure: serialization failure and deadlock (PostgreSQL).
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def is_transient(exc: BaseException) -> bool:
    """Return True for a deadlock, a serialization failure or a locked SQLite database."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    text = str(orig).lower()
    return "deadlock detected" in text or "database is locked" in text


# SQLSTATEs of a lost or refused connection: class 08 (connection exception), and the server
# shutting down or starting up (admin_shutdown, crash_shutdown, cannot_connect_now).
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
_SQLITE_UNAVAILABLE = ("unable to open database file", "disk i/o error")
_DRIVER_MODULES = ("asyncpg", "aiosqlite", "sqlalchemy", "psycopg")


def is_unavailable(exc: BaseException) -> bool:
    """Return True when ``exc`` means the database cannot be reached now (retry later).

    That is: a connection the pool invalidated (dropped mid-request), a SQLSTATE of class 08 or
    57P01-57P03, SQLite unable to open or read its file, the pool exhausted
    (``sqlalchemy.exc.TimeoutError``), or a socket error (refused, reset, timed out, unknown
    host) raised from inside the database driver or SQLAlchemy. Other ``OSError``s are not.
    """
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        sqlstate = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
        if sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES:
            return True
        if isinstance(orig, OSError):
            return True
        text = str(orig).lower()
        return any(marker in text for marker in _SQLITE_UNAVAILABLE)
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return _raised_in_driver(exc)
    return False


def _raised_in_driver(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.split(".")[0] in _DRIVER_MODULES:
            return True
        tb = tb.tb_next
    return False


async def in_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    attempts: int = 5,
    backoff_s: float = 0.05,
) -> T:
    """Run ``work`` in a fresh session and commit; retry the whole unit of work on a transient
    error (``is_transient``) up to ``attempts`` times with doubling backoff.

    ``work`` must be safe to repeat from the start (each try runs in a new transaction).
    """
    for attempt in range(1, attempts + 1):
        try:
            async with sessionmaker() as session:
                result = await work(session)
                await session.commit()
                return result
        except DBAPIError as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")
