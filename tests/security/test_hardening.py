"""Hostile input answers 4xx, never 500: integers beyond int64, NaN/Infinity, NUL characters,
huge bodies; validation errors echo little; responses carry security headers; SQL errors and
logs carry no parameters or secrets."""

from __future__ import annotations

import json

import httpx
import pytest
import structlog
from fastapi import FastAPI
from sqlalchemy import text

from dukenet.db import create_engine
from dukenet.kit import hardening
from dukenet.kit.state import AppState
from tests.factories import create_admin, register

HUGE = "10000000000000000000"  # > 2**63 - 1


class TestIntegerOverflow:
    async def test_huge_offsets_and_path_ids_are_422(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, buyer = await register(client)
        _, operator = await register(client, role="agent")
        _, admin = await create_admin(state)
        cases = [
            ("GET", f"/tasks?offset={HUGE}", buyer, ["query", "offset"]),
            ("GET", f"/tasks?limit=10&offset=-{HUGE}", buyer, ["query", "offset"]),
            ("GET", f"/files?offset={HUGE}", buyer, ["query", "offset"]),
            ("GET", f"/admin/users?offset={HUGE}", admin, ["query", "offset"]),
            ("GET", f"/runner/inbox?offset={HUGE}", operator, ["query", "offset"]),
            ("POST", f"/model/promote/{HUGE}", admin, ["path", "version"]),
        ]
        for method, path, headers, loc in cases:
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 422, (path, response.text)
            [error] = response.json()["detail"]
            assert error["loc"] == loc and "between" in error["msg"], path
        ok = await client.get("/tasks?offset=9223372036854775807", headers=buyer)
        assert ok.status_code == 200 and ok.json()["items"] == []


class TestJsonBodies:
    async def test_nan_and_infinity_are_422_with_a_serialisable_answer(
        self, client: httpx.AsyncClient
    ) -> None:
        _, buyer = await register(client)
        for constant in ("NaN", "Infinity", "-Infinity"):
            body = '{"description": "x", "complexity": 3, "cost_weight": ' + constant + "}"
            response = await client.post(
                "/tasks/quote",
                headers={**buyer, "Content-Type": "application/json"},
                content=body,
            )
            assert response.status_code == 422, response.text
            assert constant in response.json()["detail"][0]["msg"]
        # inside a string they are text, not numbers
        fine = await client.post(
            "/tasks/quote", headers=buyer, json={"description": "NaN Infinity", "complexity": 3}
        )
        assert fine.status_code != 422, fine.text

    async def test_a_nul_character_in_a_stored_string_is_422_on_every_backend(
        self, client: httpx.AsyncClient
    ) -> None:
        email = "nul@example.com"
        response = await client.post(
            "/auth/register",
            json={"email": email, "password": "a-long-password-1", "display_name": "a\x00b"},
        )
        assert response.status_code == 422, response.text
        assert "NUL" in response.json()["detail"][0]["msg"]
        _, buyer = await register(client)
        patched = await client.patch("/users/me", headers=buyer, json={"display_name": "\x00"})
        assert patched.status_code == 422
        query = await client.get("/tasks?status=%00", headers=buyer)
        assert query.status_code == 422
        # an escaped backslash before "u0000" is ordinary text
        literal = await client.patch(
            "/users/me", headers=buyer, json={"display_name": "back\\u0000slash"}
        )
        assert literal.status_code == 200 and literal.json()["display_name"] == "back\\u0000slash"

    async def test_a_body_above_the_limit_is_413_and_a_422_echoes_little(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, buyer = await register(client)
        limit = state.settings.max_json_body_bytes
        big = await client.post(
            "/tasks", headers=buyer, json={"description": "x" * (limit + 1), "complexity": 1}
        )
        assert big.status_code == 413
        assert str(limit) in big.json()["detail"]
        long = "y" * 200_000  # under the byte limit, over the description's 100,000 characters
        invalid = await client.post(
            "/tasks", headers=buyer, json={"description": long, "complexity": 1}
        )
        assert invalid.status_code == 422
        assert len(invalid.content) < 2_000
        assert "(200000 characters)" in invalid.json()["detail"][0]["input"]

    def test_validation_errors_are_made_safe_to_echo(self) -> None:
        errors = hardening.safe_errors(
            [
                {"loc": ("body", "x"), "input": float("nan"), "msg": "m", "type": "t"},
                {"loc": ("body", "api_key"), "input": "sk-secret", "msg": "m", "type": "t"},
                {"loc": ("body",), "input": {"k": "v" * 10_000}, "msg": "m", "type": "t"},
            ]
        )
        assert errors[0]["input"] == "nan"
        assert errors[1]["input"] == hardening.REDACTED
        assert len(json.dumps(errors[2])) < 300


class TestHeaders:
    async def test_security_headers_and_hsts_only_over_tls(self, app: FastAPI) -> None:
        for scheme in ("http", "https"):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://t") as c:
                response = await c.get("/openapi.json")
            assert response.headers["x-content-type-options"] == "nosniff"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert response.headers["referrer-policy"] == "no-referrer"
            assert ("strict-transport-security" in response.headers) is (scheme == "https")

    async def test_cors_is_off_by_default(self, client: httpx.AsyncClient) -> None:
        response = await client.options(
            "/auth/login",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in response.headers


class TestNoSecretsInLogs:
    async def test_sql_errors_never_show_their_parameters(self, database_url: str) -> None:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                with pytest.raises(Exception) as caught:
                    await conn.execute(
                        text("SELECT * FROM no_such_table WHERE h = :h"),
                        {"h": "$argon2id$v=19$secret-hash"},
                    )
        finally:
            await engine.dispose()
        assert "secret-hash" not in str(caught.value)
        assert "hidden" in str(caught.value)

    def test_log_lines_mask_secret_fields_and_tracebacks_show_no_locals(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        hardening.configure_logging()
        log = structlog.get_logger("test")
        log.info("login", password="hunter2-password", api_key="dk_live_secret", user="bob")

        def call_with_a_key() -> None:
            api_key = "sk-in-a-local-variable"
            raise RuntimeError(f"failed after {len(api_key)} characters")

        try:
            call_with_a_key()
        except RuntimeError:
            log.exception("executor crashed")
        out = capsys.readouterr()
        printed = out.out + out.err
        assert "bob" in printed and "executor crashed" in printed
        for secret in ("hunter2-password", "dk_live_secret", "sk-in-a-local-variable"):
            assert secret not in printed
