"""Login rate limits as clients see them (429 with Retry-After), per email and per client
address, on both storages: process memory and the Redis at ``DUKENET_TEST_REDIS_URL`` (default:
the local server; set it empty to skip the Redis cases)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis
from fastapi import FastAPI
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from dukenet.config import Settings
from dukenet.main import create_app
from tests.factories import PASSWORD, auth

REDIS_URL = os.environ.get("DUKENET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PER_EMAIL = 3
PER_IP = 5


@pytest.fixture(params=["memory", "redis"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Settings]:
    """The test settings with small login limits, on each rate-limit storage; Redis keys get a
    prefix of their own and are deleted afterwards."""
    if request.param == "redis" and not REDIS_URL:
        pytest.skip("DUKENET_TEST_REDIS_URL is empty: no Redis to test against")
    prefix = f"dukenet-test-{uuid.uuid4().hex}"
    limited = settings.model_copy(
        update={
            "login_rate_limit_per_email": f"{PER_EMAIL}/minute",
            "login_rate_limit_per_ip": f"{PER_IP}/minute",
            "redis_url": REDIS_URL if request.param == "redis" else "",
            "rate_limit_key_prefix": prefix,
        }
    )
    yield limited
    if request.param == "redis":
        with redis.Redis.from_url(REDIS_URL) as server:
            keys = list(server.scan_iter(match=f"{prefix}:*"))
            if keys:
                server.delete(*keys)


@pytest.fixture
async def client_at(app: FastAPI) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Clients on the app from three different addresses, by address."""
    clients = {
        ip: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(ip, 40000)),
            base_url="http://test/api/v2",
        )
        for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    }
    yield clients
    for c in clients.values():
        await c.aclose()


async def _signup(client: httpx.AsyncClient, role: str = "buyer") -> str:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    response = await client.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "role": role}
    )
    assert response.status_code == 201, response.text
    return email


async def _login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/auth/login", json={"email": email, "password": password})


def _assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert response.json()["detail"] == f"too many login attempts; retry in {retry_after} s"


class TestPerEmail:
    async def test_attempts_on_one_email_are_limited_from_any_address(
        self, client_at: dict[str, httpx.AsyncClient]
    ) -> None:
        a, b, c = client_at.values()
        email = await _signup(a)
        assert (await _login(a, email, "wrong password")).status_code == 401
        assert (await _login(b, email, "wrong password")).status_code == 401
        assert (await _login(c, email)).status_code == 200  # successes count too
        _assert_limited(await _login(a, email))  # even with the right password
        _assert_limited(await _login(b, email.upper()))  # emails are case-insensitive
        other = await _signup(a)
        assert (await _login(a, other)).status_code == 200

    async def test_password_change_attempts_count_against_the_email(
        self, client_at: dict[str, httpx.AsyncClient]
    ) -> None:
        a, b, _ = client_at.values()
        email = await _signup(a)
        login = await _login(a, email)
        headers = auth(login.json()["access_token"])
        for _ in range(PER_EMAIL - 1):
            wrong = await b.post(
                "/users/me/password",
                headers=headers,
                json={"current_password": "guess", "new_password": "new password 1"},
            )
            assert wrong.status_code == 400
        _assert_limited(
            await b.post(
                "/users/me/password",
                headers=headers,
                json={"current_password": PASSWORD, "new_password": "new password 1"},
            )
        )
        _assert_limited(await _login(a, email))


class TestPerAddress:
    async def test_attempts_from_one_address_are_limited_across_emails(
        self, client_at: dict[str, httpx.AsyncClient]
    ) -> None:
        a, b, _ = client_at.values()
        emails = [await _signup(a) for _ in range(PER_IP + 1)]
        for email in emails[:PER_IP]:
            assert (await _login(a, email, "wrong password")).status_code == 401
        _assert_limited(await _login(a, emails[PER_IP]))
        assert (await _login(b, emails[PER_IP])).status_code == 200

    async def test_refused_attempts_do_not_use_up_the_email_limit(
        self, client_at: dict[str, httpx.AsyncClient]
    ) -> None:
        a, b, _ = client_at.values()
        email = await _signup(a)
        for _ in range(PER_IP):
            await _login(a, f"nobody-{uuid.uuid4().hex[:6]}@example.com")
        for _ in range(3):
            _assert_limited(await _login(a, email))
        assert (await _login(b, email)).status_code == 200


class TestStorage:
    async def test_limits_are_shared_by_api_processes_only_through_redis(
        self, settings: Settings, client_at: dict[str, httpx.AsyncClient]
    ) -> None:
        a = client_at["10.0.0.1"]
        email = await _signup(a)
        for _ in range(PER_EMAIL):
            assert (await _login(a, email, "wrong password")).status_code == 401
        other_process = create_app(settings)
        async with other_process.router.lifespan_context(other_process):
            transport = httpx.ASGITransport(app=other_process, client=("10.0.0.9", 1))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://test/api/v2"
            ) as elsewhere:
                response = await _login(elsewhere, email, "wrong password")
        if settings.redis_url:
            _assert_limited(response)
            with redis.Redis.from_url(settings.redis_url) as server:
                keys = [k.decode() for k in server.scan_iter(match="*")]
            ours = [k for k in keys if k.startswith(f"{settings.rate_limit_key_prefix}:")]
            assert ours, keys
            assert not any(email in k or email.split("@")[0] in k for k in ours)
        else:
            assert response.status_code == 401

    @pytest.mark.parametrize("settings", ["memory"], indirect=True)
    async def test_logins_go_on_unthrottled_when_redis_is_unreachable(
        self, settings: Settings
    ) -> None:
        down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
        app = create_app(down)
        async with app.router.lifespan_context(app):
            app.state.dukenet.hasher = PasswordHash(
                (Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),)
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v2") as c:
                email = await _signup(c)
                for _ in range(PER_EMAIL + 1):
                    assert (await _login(c, email)).status_code == 200

    @pytest.mark.parametrize("settings", ["memory"], indirect=True)
    async def test_a_malformed_limit_stops_the_app_from_starting(self, settings: Settings) -> None:
        bad = settings.model_copy(update={"login_rate_limit_per_ip": "lots per fortnight"})
        app = create_app(bad)
        with pytest.raises(ValueError, match="lots per fortnight"):
            async with app.router.lifespan_context(app):
                pass
