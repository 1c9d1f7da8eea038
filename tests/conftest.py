"""Shared fixtures: a migrated database per backend (SQLite file, PostgreSQL), the app with its
lifespan, and an HTTP client on it.

Every test that takes ``app``/``client``/``sessionmaker`` runs once on SQLite and once on the
PostgreSQL at ``DUKENET_TEST_POSTGRES_URL`` (default: the local server). Set
``DUKENET_TEST_BACKENDS=sqlite`` to skip PostgreSQL on a machine without one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.config import Settings
from dukenet.db import create_engine, create_sessionmaker
from dukenet.kit.state import AppState
from dukenet.main import create_app
from dukenet.migrate import upgrade
from dukenet.models import metadata
from tests.llm_double import LLMDouble

POSTGRES_URL = os.environ.get(
    "DUKENET_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = [b for b in os.environ.get("DUKENET_TEST_BACKENDS", "sqlite,postgres").split(",") if b]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


async def _admin_execute(url: str, sql: str) -> None:
    engine = create_engine(url)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(sql))
    await engine.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    name = f"dukenet_test_{uuid.uuid4().hex[:10]}"
    server = make_url(POSTGRES_URL)
    asyncio.run(_admin_execute(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    asyncio.run(_admin_execute(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "dukenet.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_database")
    yield url
    tables = ", ".join(f'"{t.name}"' for t in reversed(metadata.sorted_tables))
    asyncio.run(_admin_execute(url, f"TRUNCATE {tables} CASCADE"))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings for a test app: no background workers unless a test starts them, and no dispute
    window (a delivered result pays at once) nor retry backoff unless a test sets them."""
    return Settings(
        var_dir=tmp_path / "var",
        database_url=database_url,
        jwt_secret="test-secret-" + "x" * 32,
        auto_migrate=False,
        embedded_runners=0,
        embedded_trainer=False,
        embedded_sweeper=False,
        embedded_judge=False,
        embedded_webhooks=False,
        dispute_window_s=0,
        retry_backoff_s=0,
        lease_s=30,
        max_attempts=2,
        # the LLM double listens on loopback (kit/netguard.py refuses it by default)
        allowed_agent_networks="127.0.0.0/8",
        register_rate_limit_per_ip="1000/minute",  # every test registers from one address
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan entered."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def state(app: FastAPI) -> AppState:
    """The app's per-process state, with Argon2 at its minimum cost: the tests exercise the
    flows, not the hash's strength (about 0.3 s a hash otherwise)."""
    result: AppState = app.state.dukenet
    result.hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))
    return result


@pytest.fixture
def sessionmaker(state: AppState) -> async_sessionmaker[AsyncSession]:
    """Sessions on the test database."""
    return state.sessionmaker


@pytest.fixture
async def client(app: FastAPI, state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app, based at ``/api/v2``."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v2") as c:
        yield c


@pytest.fixture
def double() -> Iterator[LLMDouble]:
    """A fresh OpenAI-compatible chat-completions server on 127.0.0.1 (see ``llm_double``)."""
    with LLMDouble() as server:
        yield server


@pytest.fixture
async def db_session(database_url: str) -> AsyncIterator[AsyncSession]:
    """A session on the test database without the app (service-level tests)."""
    engine = create_engine(database_url)
    async with create_sessionmaker(engine)() as session:
        yield session
    await engine.dispose()
