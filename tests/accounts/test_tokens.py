"""Sessions as a client sees them: login pairs, refresh rotation with reuse detection, logout,
logout everywhere, profile edits and password changes."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from dukenet.accounts.models import RefreshToken
from dukenet.config import Settings
from dukenet.kit.orm import utcnow
from dukenet.kit.state import AppState
from tests.factories import PASSWORD, auth

NEW_PASSWORD = "a much better passphrase"


async def _signup(client: httpx.AsyncClient, role: str = "buyer") -> str:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    response = await client.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "role": role}
    )
    assert response.status_code == 201, response.text
    return email


async def _login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": refresh_token})


async def _me(client: httpx.AsyncClient, pair: dict[str, Any]) -> httpx.Response:
    return await client.get("/users/me", headers=auth(pair["access_token"]))


class TestLogin:
    async def test_login_returns_an_access_and_a_refresh_token(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        pair = await _login(client, await _signup(client))
        assert pair["token_type"] == "bearer"
        assert pair["expires_in"] == settings.access_token_ttl_s
        assert pair["refresh_expires_in"] == settings.refresh_token_ttl_s
        assert len(pair["refresh_token"]) >= 40
        assert pair["refresh_token"] != pair["access_token"]
        assert (await _me(client, pair)).status_code == 200

    async def test_refresh_tokens_are_stored_only_as_sha256_hashes(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        pair = await _login(client, await _signup(client))
        async with state.sessionmaker() as session:
            rows = (await session.scalars(select(RefreshToken))).all()
        assert [r.token_hash for r in rows] == [
            hashlib.sha256(pair["refresh_token"].encode()).hexdigest()
        ]
        assert all(pair["refresh_token"] not in str(vars(r)) for r in rows)


class TestRefresh:
    async def test_refresh_rotates_the_pair_and_uses_up_the_old_token(
        self, client: httpx.AsyncClient
    ) -> None:
        first = await _login(client, await _signup(client))
        response = await _refresh(client, first["refresh_token"])
        assert response.status_code == 200, response.text
        second = response.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert (await _me(client, second)).status_code == 200
        third = await _refresh(client, second["refresh_token"])
        assert third.status_code == 200
        assert (await _me(client, third.json())).status_code == 200

    async def test_reusing_a_used_refresh_token_revokes_the_whole_session(
        self, client: httpx.AsyncClient
    ) -> None:
        email = await _signup(client)
        stolen = await _login(client, email)
        other_session = await _login(client, email)
        rotated = (await _refresh(client, stolen["refresh_token"])).json()

        reuse = await _refresh(client, stolen["refresh_token"])
        assert reuse.status_code == 401
        assert reuse.json()["detail"] == "refresh token already used; the session has been revoked"
        # The legitimate successor dies with its family, refresh and access token alike.
        successor = await _refresh(client, rotated["refresh_token"])
        assert successor.status_code == 401
        assert successor.json()["detail"] == "refresh token revoked"
        me = await _me(client, rotated)
        assert me.status_code == 401
        assert me.json()["detail"] == "access token revoked"
        # Another session of the same user is untouched.
        assert (await _me(client, other_session)).status_code == 200
        assert (await _refresh(client, other_session["refresh_token"])).status_code == 200

    async def test_concurrent_exchanges_of_one_token_yield_at_most_one_session(
        self, client: httpx.AsyncClient
    ) -> None:
        pair = await _login(client, await _signup(client))
        responses = await asyncio.gather(
            _refresh(client, pair["refresh_token"]), _refresh(client, pair["refresh_token"])
        )
        assert sorted(r.status_code for r in responses) == [200, 401]
        winner = next(r for r in responses if r.status_code == 200).json()
        assert (await _refresh(client, winner["refresh_token"])).status_code == 401

    async def test_unknown_expired_or_malformed_refresh_tokens_are_refused(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        pair = await _login(client, await _signup(client))
        unknown = await _refresh(client, "not-a-refresh-token")
        assert unknown.status_code == 401
        assert unknown.json()["detail"] == "invalid refresh token"
        forged = await _refresh(client, secrets.token_urlsafe(32))
        assert forged.status_code == 401
        for body in ({}, {"refresh_token": ""}, {"refresh_token": pair["access_token"]}):
            assert (await client.post("/auth/refresh", json=body)).status_code == 422

        async with state.sessionmaker() as session:
            await session.execute(
                update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1))
            )
            await session.commit()
        expired = await _refresh(client, pair["refresh_token"])
        assert expired.status_code == 401
        assert expired.json()["detail"] == "refresh token expired"


class TestLogout:
    async def test_logout_ends_the_session_and_its_access_token(
        self, client: httpx.AsyncClient
    ) -> None:
        email = await _signup(client)
        laptop = await _login(client, email)
        phone = await _login(client, email)
        response = await client.post(
            "/auth/logout", json={"refresh_token": laptop["refresh_token"]}
        )
        assert response.status_code == 204
        me = await _me(client, laptop)
        assert me.status_code == 401
        assert me.json()["detail"] == "access token revoked"
        assert (await _refresh(client, laptop["refresh_token"])).status_code == 401
        assert (await _me(client, phone)).status_code == 200
        assert (await _refresh(client, phone["refresh_token"])).status_code == 200

    async def test_logout_of_a_rotated_session_and_of_unknown_tokens(
        self, client: httpx.AsyncClient
    ) -> None:
        pair = await _login(client, await _signup(client))
        rotated = (await _refresh(client, pair["refresh_token"])).json()
        # The old token still names the session: logging out with it ends the current pair.
        out = await client.post("/auth/logout", json={"refresh_token": pair["refresh_token"]})
        assert out.status_code == 204
        assert (await _me(client, rotated)).status_code == 401
        again = await client.post("/auth/logout", json={"refresh_token": "never-issued"})
        assert again.status_code == 204

    async def test_logout_all_ends_every_session(self, client: httpx.AsyncClient) -> None:
        email = await _signup(client)
        sessions = [await _login(client, email) for _ in range(3)]
        response = await client.post("/auth/logout-all", headers=auth(sessions[0]["access_token"]))
        assert response.status_code == 204
        for pair in sessions:
            assert (await _me(client, pair)).status_code == 401
            assert (await _refresh(client, pair["refresh_token"])).status_code == 401
        assert (await _me(client, await _login(client, email))).status_code == 200
        assert (await client.post("/auth/logout-all")).status_code == 401


class TestProfile:
    async def test_user_changes_their_display_name(self, client: httpx.AsyncClient) -> None:
        pair = await _login(client, await _signup(client))
        response = await client.patch(
            "/users/me", headers=auth(pair["access_token"]), json={"display_name": "Ada"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["display_name"] == "Ada"
        assert response.json()["balance_sat"] == 0
        assert (await _me(client, pair)).json()["display_name"] == "Ada"
        unchanged = await client.patch("/users/me", headers=auth(pair["access_token"]), json={})
        assert unchanged.json()["display_name"] == "Ada"

    async def test_invalid_profile_changes_are_refused(self, client: httpx.AsyncClient) -> None:
        pair = await _login(client, await _signup(client))
        headers = auth(pair["access_token"])
        for body in ({"display_name": "x" * 121}, {"role": "admin"}, {"email": "a@b.example"}):
            response = await client.patch("/users/me", headers=headers, json=body)
            assert response.status_code == 422, body
        assert (await _me(client, pair)).json()["role"] == "buyer"
        assert (await client.patch("/users/me", json={"display_name": "x"})).status_code == 401


class TestPasswordChange:
    async def test_password_change_ends_other_sessions_and_starts_a_new_one(
        self, client: httpx.AsyncClient
    ) -> None:
        email = await _signup(client)
        current = await _login(client, email)
        other = await _login(client, email)
        response = await client.post(
            "/users/me/password",
            headers=auth(current["access_token"]),
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )
        assert response.status_code == 200, response.text
        fresh = response.json()
        assert (await _me(client, fresh)).status_code == 200
        assert (await _refresh(client, fresh["refresh_token"])).status_code == 200
        for old in (current, other):
            assert (await _me(client, old)).status_code == 401
            assert (await _refresh(client, old["refresh_token"])).status_code == 401
        stale = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert stale.status_code == 401
        await _login(client, email, NEW_PASSWORD)

    async def test_wrong_current_password_or_weak_new_password_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        email = await _signup(client)
        pair = await _login(client, email)
        headers = auth(pair["access_token"])
        wrong = await client.post(
            "/users/me/password",
            headers=headers,
            json={"current_password": "not it at all", "new_password": NEW_PASSWORD},
        )
        assert wrong.status_code == 400
        assert wrong.json()["detail"] == "current password is incorrect"
        weak = await client.post(
            "/users/me/password",
            headers=headers,
            json={"current_password": PASSWORD, "new_password": "short"},
        )
        assert weak.status_code == 422
        assert (await _me(client, pair)).status_code == 200
        await _login(client, email)
