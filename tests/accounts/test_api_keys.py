"""API keys as operators and their runners see them: create (secret shown once), list, use as
``Authorization: Bearer dk_...`` or ``X-API-Key``, revoke."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from dukenet.accounts.models import ApiKey
from dukenet.kit.state import AppState
from tests.factories import PASSWORD, auth, create_admin, register


async def _create_key(
    client: httpx.AsyncClient, headers: dict[str, str], name: str = "runner-1"
) -> dict[str, Any]:
    response = await client.post("/api-keys", headers=headers, json={"name": name})
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    return key


async def _keys(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/api-keys", headers=headers)
    assert response.status_code == 200, response.text
    keys: list[dict[str, Any]] = response.json()
    return keys


async def _claim(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    """Call an operator endpoint (a runner's claim; no agents, so the answer is null)."""
    return await client.post("/runner/claim", headers=headers, json={"runner": "test"})


class TestCreateAndList:
    async def test_operator_gets_the_secret_once_and_lists_keys_without_it(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, operator = await register(client, role="agent")
        created = await _create_key(client, operator, "gpu-box")
        secret = created["key"]
        assert secret.startswith("dk_") and len(secret) >= 40
        assert created["prefix"] == secret[:11]
        assert created["name"] == "gpu-box"
        assert created["last_used_at"] is None and created["revoked_at"] is None
        second = await _create_key(client, operator, "laptop")

        listed = await _keys(client, operator)
        assert [k["id"] for k in listed] == [second["id"], created["id"]]
        assert all("key" not in k for k in listed)
        assert secret not in str(listed)
        async with state.sessionmaker() as session:
            stored = await session.get(ApiKey, uuid.UUID(created["id"]))
            assert stored is not None
            assert stored.key_hash == hashlib.sha256(secret.encode()).hexdigest()
            rows = (await session.scalars(select(ApiKey))).all()
            assert all(secret not in str(vars(r)) for r in rows)

    async def test_keys_are_private_to_their_owner(self, client: httpx.AsyncClient) -> None:
        _, alice = await register(client, role="agent")
        _, bob = await register(client, role="agent")
        key = await _create_key(client, alice)
        assert await _keys(client, bob) == []
        stolen = await client.delete(f"/api-keys/{key['id']}", headers=bob)
        assert stolen.status_code == 404
        assert (await _claim(client, auth(key["key"]))).status_code == 200

    async def test_buyers_cannot_create_keys_and_bad_names_are_422(
        self, client: httpx.AsyncClient
    ) -> None:
        _, buyer = await register(client)
        refused = await client.post("/api-keys", headers=buyer, json={"name": "mine"})
        assert refused.status_code == 403
        assert refused.json()["detail"] == "only agent operators and admins can create API keys"
        _, operator = await register(client, role="agent")
        for body in ({}, {"name": ""}, {"name": "x" * 121}):
            response = await client.post("/api-keys", headers=operator, json=body)
            assert response.status_code == 422, body
        assert (await client.post("/api-keys", json={"name": "anon"})).status_code == 401


class TestAuthentication:
    async def test_key_works_as_bearer_or_x_api_key_and_notes_its_use(
        self, client: httpx.AsyncClient
    ) -> None:
        user, operator = await register(client, role="agent")
        key = await _create_key(client, operator)
        for headers in (auth(key["key"]), {"X-API-Key": key["key"]}):
            claim = await _claim(client, headers)
            assert claim.status_code == 200, claim.text
            assert claim.json() is None
            me = await client.get("/users/me", headers=headers)
            assert me.status_code == 200
            assert me.json()["id"] == user["id"]
        [listed] = await _keys(client, operator)
        assert listed["last_used_at"] is not None

    async def test_last_used_at_is_written_at_most_once_per_interval(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, operator = await register(client, role="agent")
        key = await _create_key(client, operator)
        assert (await _claim(client, auth(key["key"]))).status_code == 200
        [first] = await _keys(client, operator)
        assert (await _claim(client, auth(key["key"]))).status_code == 200
        [second] = await _keys(client, operator)
        assert second["last_used_at"] == first["last_used_at"]  # within 60 s: no write
        state.settings.api_key_touch_interval_s = 0
        assert (await _claim(client, auth(key["key"]))).status_code == 200
        [third] = await _keys(client, operator)
        assert third["last_used_at"] > first["last_used_at"]

    async def test_unknown_revoked_or_deactivated_keys_are_401(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        user, operator = await register(client, role="agent")
        key = await _create_key(client, operator)
        spare = await _create_key(client, operator, "spare")
        cases = {
            "unknown bearer": (auth("dk_" + "A" * 43), "invalid API key"),
            "unknown header": ({"X-API-Key": "not-even-a-key"}, "invalid API key"),
        }
        for case, (headers, detail) in cases.items():
            response = await _claim(client, headers)
            assert response.status_code == 401, case
            assert response.json()["detail"] == detail, case

        revoke = await client.delete(f"/api-keys/{key['id']}", headers=operator)
        assert revoke.status_code == 204
        revoked = await _claim(client, auth(key["key"]))
        assert revoked.status_code == 401
        assert revoked.json()["detail"] == "API key revoked"
        listed = {k["id"]: k for k in await _keys(client, operator)}
        assert listed[key["id"]]["revoked_at"] is not None
        assert listed[spare["id"]]["revoked_at"] is None
        again = await client.delete(f"/api-keys/{key['id']}", headers=operator)
        assert again.status_code == 204
        missing = await client.delete(f"/api-keys/{uuid.uuid4()}", headers=operator)
        assert missing.status_code == 404

        assert (await _claim(client, {"X-API-Key": spare["key"]})).status_code == 200
        await client.post(f"/admin/users/{user['id']}/deactivate", headers=admin)
        locked = await _claim(client, {"X-API-Key": spare["key"]})
        assert locked.status_code == 401
        assert locked.json()["detail"] == "user not found or deactivated"

    async def test_keys_cannot_manage_the_account_or_administer(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        admin_key = await _create_key(client, admin, "admin-runner")
        user, operator = await register(client, role="agent")
        key = await _create_key(client, operator)
        refused = [
            ("POST", "/api-keys", auth(key["key"])),
            ("GET", "/api-keys", auth(key["key"])),
            ("DELETE", f"/api-keys/{key['id']}", auth(key["key"])),
            ("POST", "/users/me/password", auth(key["key"])),
            ("POST", "/auth/logout-all", auth(key["key"])),
            ("GET", "/admin/users", auth(admin_key["key"])),
            ("POST", f"/admin/users/{user['id']}/deactivate", auth(admin_key["key"])),
            ("GET", "/admin/users", {"X-API-Key": admin_key["key"]}),
        ]
        body = {"name": "x", "current_password": PASSWORD, "new_password": PASSWORD + "!"}
        for method, url, headers in refused:
            response = await client.request(method, url, headers=headers, json=body)
            assert response.status_code == 401, (method, url)
            assert response.json()["detail"] == (
                "API keys are not accepted here; use an access token"
            )
        # An admin's key still runs the admin's agents (operator endpoints).
        assert (await _claim(client, auth(admin_key["key"]))).status_code == 200
        login = await client.post(
            "/auth/login", json={"email": user["email"], "password": PASSWORD}
        )
        assert login.status_code == 200  # the password was not changed by the key
        [listed] = await _keys(client, operator)
        assert listed["revoked_at"] is None
