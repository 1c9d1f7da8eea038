"""Registration, login and bearer tokens as a client sees them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt

from dukenet.accounts.models import User, UserRole
from dukenet.accounts.service import TokenCodec
from dukenet.config import Settings
from tests.factories import PASSWORD, auth, register


class TestRegister:
    async def test_buyer_and_operator_register_with_an_empty_wallet(
        self, client: httpx.AsyncClient
    ) -> None:
        user, headers = await register(client, email="Alice@Example.com")
        assert user["role"] == "buyer"
        assert user["email"] == "alice@example.com"
        assert "password" not in user and "password_hash" not in user
        me = await client.get("/users/me", headers=headers)
        assert me.status_code == 200
        assert me.json()["id"] == user["id"]
        assert me.json()["balance_sat"] == 0
        operator, _ = await register(client, role="agent")
        assert operator["role"] == "agent"

    async def test_duplicate_or_invalid_registrations_are_refused(
        self, client: httpx.AsyncClient
    ) -> None:
        await register(client, email="bob@example.com")
        duplicate = await client.post(
            "/auth/register", json={"email": "BOB@example.com", "password": PASSWORD}
        )
        assert duplicate.status_code == 409
        assert duplicate.json()["detail"] == "email 'BOB@example.com' is already registered"

        invalid = {
            "role": {"email": "carol@example.com", "password": PASSWORD, "role": "admin"},
            "password": {"email": "carol@example.com", "password": "short"},
            "email": {"email": "not-an-email", "password": PASSWORD},
        }
        for field, body in invalid.items():
            response = await client.post("/auth/register", json=body)
            assert response.status_code == 422, (field, response.text)
            assert [e["loc"][-1] for e in response.json()["detail"]] == [field]
        login = await client.post(
            "/auth/login", json={"email": "carol@example.com", "password": PASSWORD}
        )
        assert login.status_code == 401


class TestLogin:
    async def test_login_returns_a_working_token_and_a_wrong_password_gets_401(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        await register(client, email="dave@example.com")
        response = await client.post(
            "/auth/login", json={"email": "DAVE@example.com", "password": PASSWORD}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == settings.access_token_ttl_s
        me = await client.get("/users/me", headers=auth(body["access_token"]))
        assert me.status_code == 200
        assert me.json()["email"] == "dave@example.com"

        wrong = await client.post(
            "/auth/login", json={"email": "dave@example.com", "password": "not the password"}
        )
        unknown = await client.post(
            "/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
        )
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json()["detail"] == unknown.json()["detail"] == "incorrect email or password"


class TestBearerToken:
    async def test_missing_malformed_expired_or_foreign_tokens_are_401(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        user, headers = await register(client)
        user_id = uuid.UUID(user["id"])
        refresh_claims = {
            "sub": user["id"],
            "role": "buyer",
            "exp": datetime.now(UTC) + timedelta(minutes=5),
            "typ": "refresh",
        }
        bearer: dict[str, tuple[str, str]] = {
            "expired": (
                TokenCodec(settings.jwt_secret, ttl_s=-60).issue(
                    User(id=user_id, role=UserRole.BUYER)
                ),
                "access token expired",
            ),
            "malformed": ("not.a.jwt", "invalid access token"),
            "other secret": (
                TokenCodec("another-secret-" + "y" * 32).issue(
                    User(id=user_id, role=UserRole.ADMIN)
                ),
                "invalid access token",
            ),
            "not an access token": (
                jwt.encode(refresh_claims, settings.jwt_secret, algorithm="HS256"),
                "not an access token",
            ),
            "unknown user": (
                TokenCodec(settings.jwt_secret).issue(User(id=uuid.uuid4(), role=UserRole.BUYER)),
                "user not found or deactivated",
            ),
        }
        cases = {case: (auth(token), detail) for case, (token, detail) in bearer.items()}
        cases["missing"] = ({}, "missing bearer token")
        cases["basic scheme"] = ({"Authorization": "Basic Zm9vOmJhcg=="}, "missing bearer token")
        for case, (case_headers, detail) in cases.items():
            response = await client.get("/users/me", headers=case_headers)
            assert response.status_code == 401, case
            assert response.json()["detail"] == detail, case
        assert (await client.get("/users/me", headers=headers)).status_code == 200
