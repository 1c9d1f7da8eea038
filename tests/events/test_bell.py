"""The wake-up bell across processes (events/bell.py): two apps on one PostgreSQL database (as
two ``serve --workers`` processes are), with the poll intervals at 30 s so that only a ring can
answer in time. A result delivered through one app wakes the gateway call held by the other,
and a task created through one wakes an idle runner of the other; over PostgreSQL
LISTEN/NOTIFY without Redis, over Redis pub/sub with it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from dukenet.config import Settings
from dukenet.events.bell import BellFanout, transport_kind
from dukenet.kit.state import AppState
from dukenet.main import create_app
from tests.events.test_hub import REDIS_URL, _redis_up
from tests.factories import create_admin, credit, llm_agent, register, submit_task
from tests.llm_double import LLMDouble

POLL_S = 30.0  # what a missing ring would cost: the tests allow a fraction of it
WOKEN_WITHIN_S = 5.0
UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"
FAST_HASHER = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture(params=["postgres", "redis"])
def transport(request: pytest.FixtureRequest) -> str:
    """How the rings travel: PostgreSQL LISTEN/NOTIFY, or Redis pub/sub (skipped without)."""
    if request.param == "redis" and not _redis_up():
        pytest.skip("Redis is not running")
    return str(request.param)


@pytest.fixture
def settings(settings: Settings, transport: str) -> Settings:
    """The test settings with 30 s polls (gateway, runners) and Redis for the redis case."""
    return settings.model_copy(
        update={
            "gateway_poll_s": POLL_S,
            "runner_poll_s": POLL_S,
            "redis_url": REDIS_URL if transport == "redis" else "",
        }
    )


@dataclass
class Instance:
    """One running app ("process"), its state and a client on it (based at the root)."""

    app: FastAPI
    state: AppState
    client: httpx.AsyncClient

    @property
    def fanout(self) -> BellFanout:
        """The app's bell fan-out."""
        fanout: BellFanout | None = self.app.state.bell_fanout
        assert fanout is not None
        return fanout


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Instance]:
    """Run an app with ``settings`` until leaving; return once its bell listens to others."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: AppState = app.state.dukenet
        state.hasher = FAST_HASHER
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=60
        ) as client:
            instance = Instance(app, state, client)
            await asyncio.wait_for(instance.fanout.listening.wait(), 10)
            yield instance


@dataclass
class World:
    """An admin's, a credited buyer's and an operator's headers, the buyer's gateway key and
    the operator's ``llm`` agent."""

    admin: dict[str, str]
    buyer: dict[str, str]
    buyer_key: str
    operator: dict[str, str]
    agent: dict[str, Any]


async def make_world(instance: Instance, *, agent_url: str) -> World:
    """Create the world through ``instance``."""
    client = instance.client
    client.base_url = httpx.URL("http://test/api/v2")
    try:
        _, admin = await create_admin(instance.state)
        buyer_user, buyer = await register(client)
        await credit(client, admin, buyer_user["id"], 10_000_000)
        _, operator = await register(client, role="agent")
        agent = await llm_agent(client, operator, base_url=agent_url)
        key = await client.post("/buyer-keys", headers=buyer, json={"name": "sdk"})
        assert key.status_code == 201, key.text
    finally:
        client.base_url = httpx.URL("http://test")
    return World(admin, buyer, key.json()["key"], operator, agent)


@on_postgres
class TestGatewayCallInAnotherProcess:
    async def test_a_result_delivered_through_one_app_answers_the_call_held_by_the_other(
        self, settings: Settings
    ) -> None:
        async with running(settings) as here, running(settings) as there:
            assert here.fanout.node != there.fanout.node
            world = await make_world(here, agent_url=UNUSED_ENDPOINT)  # no runner calls it
            call = asyncio.create_task(
                there.client.post(
                    "/v1/chat/completions",
                    headers={"Authorization": f"Bearer {world.buyer_key}"},
                    json={
                        "model": world.agent["name"],
                        "messages": [{"role": "user", "content": "Add two numbers."}],
                    },
                )
            )
            claim: dict[str, Any] | None = None
            deadline = time.monotonic() + 20
            while claim is None:  # the operator's runner, over the other app's API
                assert time.monotonic() < deadline and not call.done(), "no task to claim"
                response = await here.client.post(
                    "/api/v2/runner/claim", headers=world.operator, json={}
                )
                assert response.status_code == 200, response.text
                claim = response.json()
                if claim is None:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the call is waiting on its bell now
            assert not call.done()
            submitted = await here.client.post(
                f"/api/v2/runner/tasks/{claim['task_id']}/result",
                headers=world.operator,
                json={
                    "lease_token": claim["lease_token"],
                    "idempotency_key": f"result-{uuid.uuid4().hex}",
                    "text": "def add(a, b): return a + b",
                    "success": True,
                },
            )
            assert submitted.status_code == 201, submitted.text
            delivered_at = time.monotonic()
            answer = await asyncio.wait_for(call, POLL_S + 10)
            waited_s = time.monotonic() - delivered_at
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "def add(a, b): return a + b"
        assert waited_s < WOKEN_WITHIN_S, f"answered {waited_s:.1f} s after delivery"
        assert there.fanout.received >= 1


@on_postgres
class TestRunnerInAnotherProcess:
    async def test_a_task_created_through_one_app_wakes_the_other_apps_idle_runner(
        self, settings: Settings, double: LLMDouble
    ) -> None:
        with_runner = settings.model_copy(update={"embedded_runners": 1})
        async with running(settings) as here, running(with_runner) as there:
            world = await make_world(here, agent_url=double.base_url)
            await asyncio.sleep(0.5)  # the other app's runner found nothing: idle for 30 s
            here.client.base_url = httpx.URL("http://test/api/v2")
            created_at = time.monotonic()
            created = await submit_task(here.client, world.buyer, agent_id=world.agent["id"])
            assert created.status_code == 201, created.text
            status = created.json()["status"]
            while status not in ("delivered", "completed", "failed"):
                assert time.monotonic() - created_at < POLL_S, "the runner slept its poll out"
                await asyncio.sleep(0.05)
                read = await here.client.get(f"/tasks/{created.json()['id']}", headers=world.buyer)
                status = read.json()["status"]
            took_s = time.monotonic() - created_at
        assert status == "completed"
        assert there.fanout.received >= 1
        assert took_s < WOKEN_WITHIN_S, f"completed {took_s:.1f} s after its creation"
        assert len(double.requests) == 1


class TestTransportChoice:
    def test_redis_else_postgres_else_in_process(self, tmp_path: Any) -> None:
        postgres = "postgresql+asyncpg://postgres@127.0.0.1:5432/x"
        assert transport_kind(Settings(var_dir=tmp_path, redis_url="redis://r")) == "redis"
        assert transport_kind(Settings(var_dir=tmp_path, database_url=postgres)) == "postgres"
        # SQLite serves one process; PgBouncer in transaction mode does not carry LISTEN
        assert transport_kind(Settings(var_dir=tmp_path)) == "process"
        behind = Settings(var_dir=tmp_path, database_url=postgres, database_pooler="pgbouncer")
        assert transport_kind(behind) == "process"
        assert transport_kind(behind.model_copy(update={"redis_url": "redis://r"})) == "redis"
