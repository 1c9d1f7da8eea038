"""User administration as admins and users see it: listing, deactivation and reactivation."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from dukenet.kit.state import AppState
from tests.factories import PASSWORD, auth, create_admin, register


async def _login(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post("/auth/login", json={"email": email, "password": PASSWORD})


async def _users(client: httpx.AsyncClient, admin: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get("/admin/users", headers=admin, params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


class TestListUsers:
    async def test_admin_pages_through_users_filtered_by_role(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        admin_id, admin = await create_admin(state)
        buyers = [(await register(client))[0]["id"] for _ in range(3)]
        operators = [(await register(client, role="agent"))[0]["id"] for _ in range(2)]

        everyone = await _users(client, admin)
        assert everyone["total"] == 6
        assert {u["id"] for u in everyone["items"]} == {*buyers, *operators, str(admin_id)}
        assert all("password_hash" not in u for u in everyone["items"])

        first = await _users(client, admin, role="buyer", limit=2)
        second = await _users(client, admin, role="buyer", limit=2, offset=2)
        assert first["total"] == second["total"] == 3
        assert (first["limit"], first["offset"], second["offset"]) == (2, 0, 2)
        assert len(first["items"]) == 2 and len(second["items"]) == 1
        assert {u["id"] for u in first["items"] + second["items"]} == set(buyers)

        agents = await _users(client, admin, role="agent")
        assert {u["id"] for u in agents["items"]} == set(operators)
        assert (await _users(client, admin, role="admin"))["total"] == 1

        await client.post(f"/admin/users/{buyers[0]}/deactivate", headers=admin)
        inactive = await _users(client, admin, is_active="false")
        assert [u["id"] for u in inactive["items"]] == [buyers[0]]
        assert (await _users(client, admin, is_active="true"))["total"] == 5

    async def test_only_admins_list_users_and_bad_filters_are_422(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        _, buyer = await register(client)
        _, operator = await register(client, role="agent")
        assert (await client.get("/admin/users", headers=buyer)).status_code == 403
        assert (await client.get("/admin/users", headers=operator)).status_code == 403
        assert (await client.get("/admin/users")).status_code == 401
        for params in ({"role": "owner"}, {"limit": 0}, {"limit": 501}, {"offset": -1}):
            response = await client.get("/admin/users", headers=admin, params=params)
            assert response.status_code == 422, params


class TestDeactivation:
    async def test_deactivated_user_is_locked_out_at_once(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        user, _ = await register(client)
        login = (await _login(client, user["email"])).json()
        headers = auth(login["access_token"])
        assert (await client.get("/users/me", headers=headers)).status_code == 200

        response = await client.post(f"/admin/users/{user['id']}/deactivate", headers=admin)
        assert response.status_code == 200, response.text
        assert response.json()["is_active"] is False

        me = await client.get("/users/me", headers=headers)
        assert me.status_code == 401
        assert me.json()["detail"] == "user not found or deactivated"
        refresh = await client.post("/auth/refresh", json={"refresh_token": login["refresh_token"]})
        assert refresh.status_code == 401
        relogin = await _login(client, user["email"])
        assert relogin.status_code == 401
        # the right password learns the account is deactivated (OWASP ASVS); a wrong one does not
        assert relogin.json()["detail"] == "this account is deactivated; contact an administrator"
        guess = await client.post(
            "/auth/login", json={"email": user["email"], "password": "not-the-password"}
        )
        assert guess.status_code == 401 and guess.json()["detail"] == "incorrect email or password"

    async def test_reactivated_user_logs_in_again_but_old_sessions_stay_ended(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        user, _ = await register(client)
        old = (await _login(client, user["email"])).json()
        await client.post(f"/admin/users/{user['id']}/deactivate", headers=admin)
        again = await client.post(f"/admin/users/{user['id']}/deactivate", headers=admin)
        assert again.status_code == 200  # idempotent

        response = await client.post(f"/admin/users/{user['id']}/reactivate", headers=admin)
        assert response.status_code == 200
        assert response.json()["is_active"] is True
        old_me = await client.get("/users/me", headers=auth(old["access_token"]))
        assert old_me.status_code == 401
        assert old_me.json()["detail"] == "access token revoked"
        old_refresh = await client.post(
            "/auth/refresh", json={"refresh_token": old["refresh_token"]}
        )
        assert old_refresh.status_code == 401
        new = await _login(client, user["email"])
        assert new.status_code == 200
        me = await client.get("/users/me", headers=auth(new.json()["access_token"]))
        assert me.status_code == 200

    async def test_guards_on_deactivation(self, client: httpx.AsyncClient, state: AppState) -> None:
        admin_id, admin = await create_admin(state)
        user, buyer = await register(client)
        own = await client.post(f"/admin/users/{admin_id}/deactivate", headers=admin)
        assert own.status_code == 409
        assert own.json()["detail"] == "admins cannot deactivate themselves"
        missing = await client.post(f"/admin/users/{uuid.uuid4()}/deactivate", headers=admin)
        assert missing.status_code == 404
        for action in ("deactivate", "reactivate"):
            forbidden = await client.post(f"/admin/users/{user['id']}/{action}", headers=buyer)
            assert forbidden.status_code == 403
        assert (await client.get("/users/me", headers=admin)).status_code == 200
