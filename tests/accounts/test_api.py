"""Registration, login and bearer tokens as a client sees them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from dukenet.accounts.models import User, UserRole
from dukenet.accounts.service import TokenCodec
from dukenet.config import Settings
from dukenet.kit.state import AppState
from tests.factories import PASSWORD, auth, register


@pytest.fixture(autouse=True)
def _fast_password_hashing(state: AppState) -> None:
    """Argon2 at its minimum cost: these tests exercise the flows, not the hash's strength."""
    state.hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))


class TestRegister:
    async def test_buyer_registers_and_starts_with_an_empty_wallet(
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

    async def test_operator_registers_with_the_agent_role(self, client: httpx.AsyncClient) -> None:
        user, _ = await register(client, role="agent")
        assert user["role"] == "agent"

    async def test_duplicate_email_is_409_whatever_its_case(self, client: httpx.AsyncClient) -> None:
        await register(client, email="bob@example.com")
        response = await client.post(
            "/auth/register", json={"email": "BOB@example.com", "password": PASSWORD}
        )
        assert response.status_code == 409
        assert "already registered" in response.json()["detail"]

    @pytest.mark.parametrize(
        "body",
        [
            {"email": "carol@example.com", "password": PASSWORD, "role": "admin"},
            {"email": "carol@example.com", "password": "short"},
            {"email": "not-an-email", "password": PASSWORD},
        ],
        ids=["admin-role", "short-password", "bad-email"],
    )
    async def test_invalid_registration_is_422(
        self, client: httpx.AsyncClient, body: dict[str, str]
    ) -> None:
        response = await client.post("/auth/register", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"]


class TestLogin:
    async def test_login_returns_a_working_bearer_token(
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

    async def test_wrong_password_and_unknown_email_get_the_same_401(
        self, client: httpx.AsyncClient
    ) -> None:
        await register(client, email="erin@example.com")
        wrong = await client.post(
            "/auth/login", json={"email": "erin@example.com", "password": "not the password"}
        )
        unknown = await client.post(
            "/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
        )
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json()["detail"] == unknown.json()["detail"] == "incorrect email or password"


class TestBearerToken:
    async def test_missing_token_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/users/me")
        assert response.status_code == 401
        assert response.json()["detail"] == "missing bearer token"

    async def test_non_bearer_scheme_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/users/me", headers={"Authorization": "Basic Zm9vOmJhcg=="})
        assert response.status_code == 401

    async def test_malformed_token_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/users/me", headers=auth("not.a.jwt"))
        assert response.status_code == 401
        assert response.json()["detail"] == "invalid access token"

    async def test_expired_token_is_401(self, client: httpx.AsyncClient, settings: Settings) -> None:
        user, _ = await register(client)
        expired = TokenCodec(settings.jwt_secret, ttl_s=-60).issue(
            User(id=uuid.UUID(user["id"]), role=UserRole.BUYER)
        )
        response = await client.get("/users/me", headers=auth(expired))
        assert response.status_code == 401
        assert response.json()["detail"] == "access token expired"

    async def test_token_signed_with_another_secret_is_401(self, client: httpx.AsyncClient) -> None:
        user, _ = await register(client)
        forged = TokenCodec("another-secret-" + "y" * 32).issue(
            User(id=uuid.UUID(user["id"]), role=UserRole.ADMIN)
        )
        response = await client.get("/users/me", headers=auth(forged))
        assert response.status_code == 401
        assert response.json()["detail"] == "invalid access token"

    async def test_token_that_is_not_an_access_token_is_401(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        user, _ = await register(client)
        claims = {
            "sub": user["id"],
            "role": "buyer",
            "exp": datetime.now(UTC) + timedelta(minutes=5),
            "typ": "refresh",
        }
        token = jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
        response = await client.get("/users/me", headers=auth(token))
        assert response.status_code == 401
        assert response.json()["detail"] == "not an access token"

    async def test_valid_token_of_an_unknown_user_is_401(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        ghost = TokenCodec(settings.jwt_secret).issue(User(id=uuid.uuid4(), role=UserRole.BUYER))
        response = await client.get("/users/me", headers=auth(ghost))
        assert response.status_code == 401
