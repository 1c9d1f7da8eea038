"""The database away for a few seconds: requests fail with 503 and a clear message, nothing is
half-written, and the service recovers by itself once the database is back.

PostgreSQL is reached through a loopback TCP proxy that the test cuts (every connection reset,
new ones refused) and restores; the shared server itself is never stopped. On SQLite, the
embedded file database, the only outage is a lock held past the busy timeout, which is the
existing "database is busy" 503 (``db.is_transient``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import select
from sqlalchemy.engine import make_url

from dukenet.config import Settings
from dukenet.kit.state import AppState
from dukenet.main import create_app
from dukenet.tasks.models import Task
from tests.factories import create_admin, credit, register, replay_agent, submit_task
from tests.faults.tcp_proxy import TcpProxy

RECOVERY_TIMEOUT_S = 20.0


@pytest.fixture
def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    """A cuttable proxy in front of the test's PostgreSQL server."""
    if database_url.startswith("sqlite"):
        pytest.skip("an embedded SQLite file has no connection to lose (a lock is a busy 503)")
    url = make_url(database_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running  # type: ignore[misc]


@pytest.fixture
async def outage_client(
    settings: Settings, database_url: str, proxy: TcpProxy
) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    """A client on an app whose database connections all go through ``proxy``."""
    proxied = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    app = create_app(
        settings.model_copy(update={"database_url": proxied.render_as_string(hide_password=False)})
    )
    async with app.router.lifespan_context(app):
        state: AppState = app.state.dukenet
        state.hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v2") as c:
            yield c, state


async def _until_ok(client: httpx.AsyncClient, headers: dict[str, str]) -> float:
    """Poll ``GET /users/me`` until it answers 200; return the seconds it took."""
    started = time.monotonic()
    while True:
        response = await client.get("/users/me", headers=headers)
        if response.status_code == 200:
            return time.monotonic() - started
        assert response.status_code == 503, response.text
        assert time.monotonic() - started < RECOVERY_TIMEOUT_S, "the service did not recover"
        await asyncio.sleep(0.2)


class TestDatabaseOutage:
    async def test_requests_fail_with_503_then_recover_without_a_half_written_task(
        self, outage_client: tuple[httpx.AsyncClient, AppState], proxy: TcpProxy
    ) -> None:
        client, state = outage_client
        _, admin = await create_admin(state)
        buyer_json, buyer = await register(client)
        await credit(client, admin, buyer_json["id"], 1_000_000)
        await replay_agent(client, admin)
        first = await submit_task(client, buyer, idempotency_key="before")
        assert first.status_code == 201, first.text
        balance = (await client.get("/users/me", headers=buyer)).json()["balance_sat"]

        proxy.cut()
        for method, path, body in (
            ("GET", "/users/me", None),
            ("GET", "/tasks", None),
            ("POST", "/tasks", {"description": "Add 2 and 2.", "idempotency_key": "during"}),
        ):
            response = await client.request(method, path, headers=buyer, json=body)
            assert response.status_code == 503, (path, response.text)
            assert response.json() == {"detail": "the database is unavailable; retry shortly"}
            assert response.headers["Retry-After"] == "1"
        proxy.restore()

        recovery_s = await _until_ok(client, buyer)
        print(f"recovered {recovery_s:.2f} s after the database came back")
        me: dict[str, Any] = (await client.get("/users/me", headers=buyer)).json()
        assert me["balance_sat"] == balance  # the refused submit took nothing
        async with state.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(Task.idempotency_key, Task.status).where(
                        Task.buyer_id == uuid.UUID(buyer_json["id"])
                    )
                )
            ).all()
        # and wrote no task: the buyer has only the task submitted before the outage
        assert [key for key, _ in rows] == ["before"], rows
        retried = await submit_task(client, buyer, idempotency_key="during")
        assert retried.status_code == 201, retried.text
        check = (await client.get("/admin/ledger/check", headers=admin)).json()
        assert check["ok"] is True, check

    async def test_pooled_connections_lost_while_idle_are_replaced_without_an_error(
        self, outage_client: tuple[httpx.AsyncClient, AppState], proxy: TcpProxy
    ) -> None:
        client, _ = outage_client
        _, buyer = await register(client)
        # Pooled connections now exist; cutting resets them under the pool's feet.
        assert (await client.get("/users/me", headers=buyer)).status_code == 200
        proxy.cut()
        proxy.restore()
        # The dead pooled connections are detected (pre-ping) and replaced: no request fails.
        for _ in range(5):
            response = await client.get("/users/me", headers=buyer)
            assert response.status_code == 200, response.text
