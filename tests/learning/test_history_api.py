"""The training runs and the alias history as an admin reads them (the web UI's model pages)."""

from __future__ import annotations

import httpx
import pytest

from dukenet.config import Settings
from dukenet.kit.state import AppState
from tests.learning.test_registry import _two_versions


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"retrain_every_n": 30, "routing_seed": 7})


class TestRunsAndAliasHistory:
    async def test_runs_and_who_moved_the_champion_when(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        admin, champion, other = await _two_versions(client, state)
        email = (await client.get("/users/me", headers=admin)).json()["email"]

        runs = await client.get("/model/runs", headers=admin)
        assert runs.status_code == 200
        assert [r["status"] for r in runs.json()] == ["succeeded", "succeeded"]
        assert all(r["trigger"] == "admin" and r["finished_at"] for r in runs.json())
        assert runs.json()[0]["started_at"] >= runs.json()[1]["started_at"]
        assert len((await client.get("/model/runs?limit=1", headers=admin)).json()) == 1

        automatic = (await client.get("/model/alias-events", headers=admin)).json()
        assert automatic and all(e["actor"] is None for e in automatic)  # the trainer's

        for version in (1, 2):
            assert (
                await client.post(f"/model/promote/{version}", headers=admin)
            ).status_code == 200
        assert (await client.post("/model/rollback", headers=admin)).status_code == 200
        events = (await client.get("/model/alias-events", headers=admin)).json()
        assert len(events) == len(automatic) + 3
        moves = [(e["action"], e["previous_version"], e["version"], e["actor"]) for e in events[:3]]
        assert moves == [
            ("rollback", 2, 1, email),
            ("promote", 1, 2, email),
            ("promote", champion, 1, email),
        ]
        assert all(e["alias"] == "champion" for e in events)
        assert other in (1, 2)

    async def test_limits_are_validated(self, client: httpx.AsyncClient, state: AppState) -> None:
        from tests.factories import create_admin

        _, admin = await create_admin(state)
        assert (await client.get("/model/runs?limit=0", headers=admin)).status_code == 422
        assert (
            await client.get("/model/alias-events?limit=5000", headers=admin)
        ).status_code == 422
        assert (await client.get("/model/runs", headers=admin)).json() == []
