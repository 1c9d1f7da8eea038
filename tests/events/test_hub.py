"""Live task events: the hub's visibility rules, the SSE stream on the app, and the Redis
fan-out between two API processes on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from dukenet.config import Settings
from dukenet.events.hub import TaskEventHub
from dukenet.kit.state import AppState
from tests.conftest import BACKENDS
from tests.factories import PASSWORD, auth, create_admin, credit, register, submit_task

REDIS_URL = os.environ.get("DUKENET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"events_poll_s": 0.05})


async def _operator_agent(client: httpx.AsyncClient, operator: dict[str, str]) -> str:
    response = await client.post(
        "/agents",
        headers=operator,
        json={"name": f"human-{uuid.uuid4().hex[:6]}", "kind": "human", "base_price_sat": 10},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _hub(app: FastAPI) -> TaskEventHub:
    hub: TaskEventHub = app.state.task_events
    return hub


async def _drain(queue: asyncio.Queue[object], wait_s: float = 3.0) -> list[object]:
    events = [await asyncio.wait_for(queue.get(), timeout=wait_s)]
    await asyncio.sleep(0.3)
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


class TestHub:
    async def test_each_change_reaches_its_buyer_its_operator_and_admins_only(
        self, client: httpx.AsyncClient, state: AppState, app: FastAPI
    ) -> None:
        admin_id, admin = await create_admin(state)
        buyer, buyer_headers = await register(client)
        other, _ = await register(client)
        operator_user, operator = await register(client, role="agent")
        await credit(client, admin, buyer["id"], 10**6)
        agent_id = await _operator_agent(client, operator)
        hub = _hub(app)
        async with state.sessionmaker() as session:
            from dukenet.accounts import repository as accounts_repository

            users = {
                name: await accounts_repository.get(session, uuid.UUID(str(uid)))
                for name, uid in (
                    ("buyer", buyer["id"]),
                    ("other", other["id"]),
                    ("operator", operator_user["id"]),
                    ("admin", admin_id),
                )
            }
        queues = {}
        with (
            hub.subscribe(users["buyer"]) as queues["buyer"],  # type: ignore[arg-type]
            hub.subscribe(users["other"]) as queues["other"],  # type: ignore[arg-type]
            hub.subscribe(users["operator"]) as queues["operator"],  # type: ignore[arg-type]
            hub.subscribe(users["admin"]) as queues["admin"],  # type: ignore[arg-type]
        ):
            task = (await submit_task(client, buyer_headers, agent_id=agent_id)).json()
            for name in ("buyer", "operator", "admin"):
                events = await _drain(queues[name])  # type: ignore[arg-type]
                assert [(e.task_id, e.status) for e in events] == [  # type: ignore[attr-defined]
                    (uuid.UUID(task["id"]), task["status"])
                ], name
            assert queues["other"].empty()
            claim = await client.post(
                "/runner/claim", headers=operator, json={"task_id": task["id"]}
            )
            assert claim.status_code == 200
            events = await _drain(queues["buyer"])  # type: ignore[arg-type]
            assert [e.status for e in events] == ["executing"]  # type: ignore[attr-defined]
            assert queues["other"].empty()


class TestStream:
    async def test_the_stream_carries_the_callers_task_changes(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        buyer, headers = await register(client)
        await credit(client, admin, buyer["id"], 10**6)
        _, operator = await register(client, role="agent")
        agent_id = await _operator_agent(client, operator)

        async def read() -> list[dict[str, str]]:
            events = []
            async with client.stream(
                "GET", "/events/tasks", headers=headers, params={"max_s": 2}
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line.removeprefix("data: ")))
            return events

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.3)
        task = (await submit_task(client, headers, agent_id=agent_id)).json()
        cancel = await client.post(f"/tasks/{task['id']}/cancel", headers=headers)
        assert cancel.status_code == 200
        events = await reader
        statuses = [e["status"] for e in events if e["task_id"] == task["id"]]
        assert statuses[-1] == "cancelled"
        assert set(events[0]) == {"task_id", "status", "agent_id", "updated_at"}

    async def test_unauthenticated_is_401(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/events/tasks")).status_code == 401
        assert (await client.get("/events/tasks", headers=auth("nope"))).status_code == 401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def serve_processes(
    database_url: str, tmp_path: Path, *, count: int = 2, env: dict[str, str] | None = None
) -> Iterator[list[str]]:
    """Run ``count`` ``dukenet serve`` processes on one PostgreSQL database, all on Redis
    (no embedded runner or trainer; the first migrates), with ``env`` on top; yield their
    URLs, stop them on exit."""
    secret = secrets.token_urlsafe(32)
    prefix = f"dukenet-test-{uuid.uuid4().hex[:6]}"
    processes, urls = [], []
    try:
        for i in range(count):
            port = _free_port()
            process_env = {k: v for k, v in os.environ.items() if not k.startswith("DUKENET_")}
            process_env.update(
                {
                    "DUKENET_DATABASE_URL": database_url,
                    "DUKENET_VAR_DIR": str(tmp_path / f"var{i}"),
                    "DUKENET_PORT": str(port),
                    "DUKENET_JWT_SECRET": secret,
                    "DUKENET_REDIS_URL": REDIS_URL,
                    "DUKENET_RATE_LIMIT_KEY_PREFIX": prefix,
                    "DUKENET_EMBEDDED_RUNNERS": "0",
                    "DUKENET_EMBEDDED_TRAINER": "0",
                    "DUKENET_EVENTS_POLL_S": "0.2",
                    "DUKENET_AUTO_MIGRATE": "1" if i == 0 else "0",
                    "DUKENET_WEB_UI": "0",
                    **(env or {}),
                }
            )
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "dukenet", "serve"],
                    env=process_env,
                    stdout=subprocess.DEVNULL,
                )
            )
            url = f"http://127.0.0.1:{port}"
            for _ in range(1200):
                assert processes[-1].poll() is None, "dukenet serve exited"
                try:
                    if httpx.get(f"{url}/openapi.json").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            else:
                pytest.fail("dukenet serve did not start within 120 s")
            urls.append(url)
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture
def two_servers(postgres_database: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two ``dukenet serve`` processes on one PostgreSQL database, both on Redis."""
    with serve_processes(postgres_database, tmp_path) as urls:
        yield urls


async def _create_admin(database_url: str, email: str) -> None:
    from dukenet.accounts import service as accounts_service
    from dukenet.accounts.models import UserRole
    from dukenet.db import create_engine, create_sessionmaker

    engine = create_engine(database_url)
    async with create_sessionmaker(engine)() as session:
        await accounts_service.register(
            session,
            accounts_service.password_hasher(),
            email=email,
            password=PASSWORD,
            role=UserRole.ADMIN,
        )
        await session.commit()
    await engine.dispose()


def _login(client: httpx.Client, email: str, role: str | None = None) -> dict[str, str]:
    if role is not None:
        body = {"email": email, "password": PASSWORD, "role": role}
        assert client.post("/auth/register", json=body).status_code == 201
    response = client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return auth(response.json()["access_token"])


@pytest.mark.slow
@pytest.mark.skipif("postgres" not in BACKENDS or not _redis_up(), reason="PostgreSQL + Redis")
class TestRedisFanOut:
    def test_a_change_made_through_one_process_reaches_a_stream_on_the_other_once(
        self, postgres_database: str, two_servers: list[str]
    ) -> None:
        a, b = (httpx.Client(base_url=f"{url}/api/v2", timeout=30) for url in two_servers)
        tag = uuid.uuid4().hex[:8]
        asyncio.run(_create_admin(postgres_database, f"fanout-admin-{tag}@example.com"))
        admin = _login(a, f"fanout-admin-{tag}@example.com")
        buyer = _login(a, f"fanout-buyer-{tag}@example.com", role="buyer")
        operator = _login(a, f"fanout-op-{tag}@example.com", role="agent")
        buyer_id = a.get("/users/me", headers=buyer).json()["id"]
        credited = a.post(
            f"/admin/users/{buyer_id}/credit", headers=admin, json={"amount_sat": 10**6}
        )
        assert credited.status_code == 200
        agent = a.post(
            "/agents",
            headers=operator,
            json={"name": f"human-{tag}", "kind": "human", "base_price_sat": 10},
        ).json()

        received: list[dict[str, str]] = []
        with b.stream("GET", "/events/tasks", headers=buyer, params={"max_s": 6}) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            body = {"description": "fan out", "complexity": 1, "agent_id": agent["id"]}
            task = a.post("/tasks", headers=buyer, json=body).json()
            assert a.post(f"/tasks/{task['id']}/cancel", headers=buyer).status_code == 200
            for line in lines:
                if line.startswith("data: "):
                    received.append(json.loads(line.removeprefix("data: ")))
        mine = [(e["task_id"], e["status"]) for e in received if e["task_id"] == task["id"]]
        assert mine and mine[-1] == (task["id"], "cancelled")
        assert len(mine) == len(set(mine)), "one poller publishes each change once"
