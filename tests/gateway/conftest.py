"""A real ``dukenet serve`` (uvicorn on a loopback port, one embedded runner) for the gateway's
client tests, with a buyer holding an API key and an operator's ``llm`` agent on the double."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import UserRole
from dukenet.config import Settings
from dukenet.db import create_engine, create_sessionmaker
from dukenet.main import create_app
from tests.factories import PASSWORD
from tests.llm_double import LLMDouble

FAST_HASHER = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))


@dataclass
class LiveServer:
    """The server's base URL, an admin's and a buyer's headers, the buyer's API key and the
    agent (JSON) answering from the double."""

    url: str
    admin: dict[str, str]
    buyer: dict[str, str]
    buyer_id: str
    buyer_key: str
    agent: dict[str, Any]
    settings: Settings

    def api(self) -> httpx.Client:
        """Return a client based at ``/api/v2``."""
        return httpx.Client(base_url=self.url + "/api/v2", timeout=30)


async def _create_admin(url: str) -> str:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
            await accounts_service.register(
                session, FAST_HASHER, email=email, password=PASSWORD, role=UserRole.ADMIN
            )
            await session.commit()
            return email
    finally:
        await engine.dispose()


def _login(api: httpx.Client, email: str) -> dict[str, str]:
    response = api.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _register(api: httpx.Client, role: str) -> tuple[str, dict[str, str]]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    response = api.post("/auth/register", json={"email": email, "password": PASSWORD, "role": role})
    assert response.status_code == 201, response.text
    return response.json()["id"], _login(api, email)


@pytest.fixture
def double() -> Iterator[LLMDouble]:
    """The LLM double, streaming its answers word by word (5 ms apart) when asked to stream."""
    with LLMDouble(streaming=True, stream_delay_s=0.005) as server:
        yield server


@pytest.fixture
def live_settings(settings: Settings) -> Settings:
    """The test settings with one embedded runner, fast webhook polling and a short LLM
    timeout (a hanging double's request ends, and the runner with it, within seconds)."""
    return settings.model_copy(
        update={
            "embedded_runners": 1,
            "runner_poll_s": 0.05,
            "webhook_poll_s": 0.05,
            "llm_timeout_s": 2.0,
        }
    )


@pytest.fixture
def live(live_settings: Settings, double: LLMDouble) -> Iterator[LiveServer]:
    """Serve the app on 127.0.0.1 from a thread; yield the world; stop the server."""
    app = create_app(live_settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    app.state.dukenet.hasher = FAST_HASHER
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url + "/api/v2", timeout=30) as api:
            admin = _login(api, asyncio.run(_create_admin(live_settings.resolved_database_url)))
            buyer_id, buyer = _register(api, "buyer")
            _, operator = _register(api, "agent")
            credited = api.post(
                f"/admin/users/{buyer_id}/credit", headers=admin, json={"amount_sat": 10_000_000}
            )
            assert credited.status_code == 200, credited.text
            agent = api.post(
                "/agents",
                headers=operator,
                json={
                    "name": f"llm-{uuid.uuid4().hex[:8]}",
                    "kind": "llm",
                    "base_price_sat": 1_000,
                    "llm": {"base_url": double.base_url, "model": "test-model"},
                },
            )
            assert agent.status_code == 201, agent.text
            key = api.post("/buyer-keys", headers=buyer, json={"name": "sdk"})
            assert key.status_code == 201, key.text
        yield LiveServer(
            url=url,
            admin=admin,
            buyer=buyer,
            buyer_id=buyer_id,
            buyer_key=key.json()["key"],
            agent=agent.json(),
            settings=live_settings,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=30)
