"""``DUKENET_DATABASE_POOLER=pgbouncer``: an app behind PgBouncer in transaction mode serves
requests, because no prepared statement is reused after its query and none shares a name with
another (``db.pgbouncer_connect_args``).

On the real PostgreSQL; the PgBouncer test starts a real PgBouncer (transaction pooling, two
server connections for many client connections) and is skipped where none is installed."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import text
from sqlalchemy.engine import make_url

from dukenet.config import Settings
from dukenet.kit.state import AppState
from dukenet.main import create_app
from tests.factories import (
    claim_and_submit,
    create_admin,
    credit,
    llm_agent,
    register,
    submit_task,
)

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"
PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test settings with ``database_pooler=pgbouncer``."""
    return settings.model_copy(update={"database_pooler": "pgbouncer"})


async def _serve_market(client: httpx.AsyncClient, state: AppState, *, buyers: int) -> None:
    """Run the market over HTTP: ``buyers`` buyers at once each submit a task, the agent's
    operator claims and answers each, every buyer reads it back completed."""
    state.hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))
    _, admin = await create_admin(state)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url=UNUSED_ENDPOINT)  # no runner calls it

    async def buy() -> None:
        user, headers = await register(client)
        await credit(client, admin, user["id"], 1_000_000)
        created = await submit_task(client, headers, agent_id=agent["id"])
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        result = await claim_and_submit(client, operator, task_id, "def add(a, b): return a + b")
        assert result.status_code == 201, result.text
        read = await client.get(f"/tasks/{task_id}", headers=headers)
        assert read.status_code == 200 and read.json()["status"] == "completed", read.text

    await asyncio.gather(*(buy() for _ in range(buyers)))


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan entered (with these settings)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


class TestDirectPostgres:
    async def test_serves_requests_leaving_no_prepared_statements(self, app: FastAPI) -> None:
        state: AppState = app.state.dukenet
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v2") as c:
            await _serve_market(c, state, buyers=3)
        async with state.engine.connect() as conn:
            names = list(await conn.scalars(text("SELECT name FROM pg_prepared_statements")))
        # asyncpg's cache keeps every statement a connection ran ("__asyncpg_stmt_N__", the
        # names PgBouncer's backends clash on); here at most the statement just closed is
        # still to be deallocated, and it has a name of its own
        assert not [name for name in names if name.startswith("__asyncpg_stmt_")], names
        assert len(names) <= 2, names


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def pgbouncer(tmp_path: Path, database_url: str) -> Iterator[str]:
    """A PgBouncer in transaction pooling mode in front of the test database (two server
    connections); yields the database URL through it."""
    if PGBOUNCER is None:
        pytest.skip("PgBouncer is not installed")
    target = make_url(database_url)
    port = _free_port()
    work = tmp_path / "pgbouncer"
    work.mkdir()
    (work / "users.txt").write_text(f'"{target.username}" ""\n')
    (work / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"dukenet = host={target.host} port={target.port or 5432} dbname={target.database} "
        f"user={target.username}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {work / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 200\n"
    )
    command = [PGBOUNCER, str(work / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        shutil.chown(work, "nobody")
        for path in work.iterdir():
            shutil.chown(path, "nobody")
        command[1:1] = ["-u", "nobody"]
    log = (work / "pgbouncer.log").open("wb")  # its log goes to stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, (work / "pgbouncer.log").read_text()
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "PgBouncer did not listen within 10 s"
            time.sleep(0.05)
        yield target.set(host="127.0.0.1", port=port, database="dukenet").render_as_string(
            hide_password=False
        )
    finally:
        process.terminate()
        process.wait(10)
        log.close()


class TestBehindPgBouncer:
    async def test_serves_concurrent_requests_in_transaction_mode(
        self, settings: Settings, pgbouncer: str
    ) -> None:
        application = create_app(
            settings.model_copy(update={"database_url": pgbouncer, "auto_migrate": True})
        )
        async with application.router.lifespan_context(application):
            state: AppState = application.state.dukenet
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://test/api/v2"
            ) as client:
                # many client connections share PgBouncer's two server connections, so
                # consecutive transactions of one connection land on different backends
                await _serve_market(client, state, buyers=8)
                async with state.sessionmaker() as session:
                    count = await session.scalar(text("SELECT count(*) FROM task"))
                assert count == 8
