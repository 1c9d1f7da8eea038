"""An admin resets a user's password; the user must set a new one before anything else."""

from __future__ import annotations

import httpx

from dukenet.kit.state import AppState
from tests.factories import PASSWORD, auth, create_admin, register


async def _reset(client: httpx.AsyncClient, admin: dict[str, str], user_id: str) -> str:
    response = await client.post(f"/admin/users/{user_id}/reset-password", headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == user_id
    temporary: str = response.json()["temporary_password"]
    return temporary


class TestPasswordReset:
    async def test_reset_user_must_change_password_before_using_the_api(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        user, old_headers = await register(client)
        temporary = await _reset(client, admin, user["id"])
        assert len(temporary) >= 12

        # the old session and password are gone
        assert (await client.get("/users/me", headers=old_headers)).status_code == 401
        old_login = await client.post(
            "/auth/login", json={"email": user["email"], "password": PASSWORD}
        )
        assert old_login.status_code == 401
        login = await client.post(
            "/auth/login", json={"email": user["email"], "password": temporary}
        )
        assert login.status_code == 200
        headers = auth(login.json()["access_token"])

        me = await client.get("/users/me", headers=headers)
        assert me.status_code == 200 and me.json()["must_change_password"] is True
        blocked = await client.get("/tasks", headers=headers)
        assert blocked.status_code == 403
        assert "password change required" in blocked.json()["detail"]
        assert (
            await client.post("/api-keys", headers=headers, json={"name": "k"})
        ).status_code == 403

        changed = await client.post(
            "/users/me/password",
            headers=headers,
            json={"current_password": temporary, "new_password": "a brand new password"},
        )
        assert changed.status_code == 200, changed.text
        fresh = auth(changed.json()["access_token"])
        me = await client.get("/users/me", headers=fresh)
        assert me.json()["must_change_password"] is False
        assert (await client.get("/tasks", headers=fresh)).status_code == 200

    async def test_unknown_user_is_404_and_only_admins_reset(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        user, buyer = await register(client)
        missing = "00000000-0000-4000-8000-000000000000"
        response = await client.post(f"/admin/users/{missing}/reset-password", headers=admin)
        assert response.status_code == 404
        response = await client.post(f"/admin/users/{user['id']}/reset-password", headers=buyer)
        assert response.status_code == 403
        assert (await client.get("/users/me", headers=buyer)).json()[
            "must_change_password"
        ] is False


class TestUserSearch:
    async def test_search_matches_part_of_email_or_name_case_insensitively(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        alice, alice_headers = await register(client, email="Alice.Smith@example.com")
        await client.patch("/users/me", headers=alice_headers, json={"display_name": "Wonder_Land"})
        await register(client, email="bob@example.com")

        async def emails(q: str) -> set[str]:
            response = await client.get("/admin/users", headers=admin, params={"q": q})
            assert response.status_code == 200
            return {u["email"] for u in response.json()["items"]}

        assert await emails("alice.s") == {alice["email"]}
        assert await emails("wonder_") == {alice["email"]}
        assert await emails("e_s") == set()  # "_" is a literal ("alice.smith" has "e.s")
        assert await emails("BOB") == {"bob@example.com"}
        assert await emails("%") == set()
