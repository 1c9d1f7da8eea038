"""Abuse: registrations are rate limited per client address, and X-Forwarded-For is believed
only from configured proxies."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from limits import parse
from limits.aio.storage import MemoryStorage
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from dukenet.accounts.rate_limit import LoginRateLimiter
from dukenet.cli import proxy_options
from dukenet.config import Settings
from dukenet.kit.state import AppState
from tests.factories import PASSWORD


def _limiter(registrations: str = "3/minute", per_ip: str = "4/minute") -> LoginRateLimiter:
    return LoginRateLimiter(
        MemoryStorage(),
        per_email=parse("100/minute"),
        per_ip=parse(per_ip),
        registrations_per_ip=parse(registrations),
    )


def _user() -> dict[str, str]:
    return {"email": f"u-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}


class TestRegistrationLimit:
    async def test_registrations_from_one_address_are_limited_with_retry_after(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        state.login_limiter = _limiter()
        for _ in range(3):
            assert (await client.post("/auth/register", json=_user())).status_code == 201
        refused = await client.post(
            "/auth/register", json=_user(), headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert refused.status_code == 429
        assert "too many registrations" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) >= 1


class TestForwardedFor:
    async def test_the_app_itself_ignores_x_forwarded_for(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        state.login_limiter = _limiter(per_ip="4/minute")
        statuses = []
        for i in range(6):
            response = await client.post(
                "/auth/login",
                json=_user(),
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            statuses.append(response.status_code)
        assert statuses == [401] * 4 + [429] * 2

    async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
        self, app: FastAPI, state: AppState
    ) -> None:
        for trusted, expected in (("10.9.9.9", [401] * 4 + [429] * 2), ("127.0.0.1", [401] * 6)):
            state.login_limiter = _limiter(per_ip="4/minute")
            options = proxy_options(Settings(trusted_proxies=trusted))
            assert options == {"proxy_headers": True, "forwarded_allow_ips": trusted}
            wrapped = ProxyHeadersMiddleware(app, trusted_hosts=options["forwarded_allow_ips"])
            transport = httpx.ASGITransport(app=wrapped, client=("127.0.0.1", 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v2") as c:
                statuses = [
                    (
                        await c.post(
                            "/auth/login",
                            json=_user(),
                            headers={"X-Forwarded-For": f"198.51.100.{i}"},
                        )
                    ).status_code
                    for i in range(6)
                ]
            assert statuses == expected, trusted

    def test_no_proxy_is_trusted_by_default(self) -> None:
        assert proxy_options(Settings()) == {"proxy_headers": False}
