"""The probes: /health (liveness) and /ready (database reachable, schema at the head)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from dukenet.db import create_engine
from dukenet.kit.state import AppState
from dukenet.migrate import head_revisions


def _root(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


class TestHealth:
    async def test_liveness_answers_without_authentication(self, app: FastAPI) -> None:
        async with _root(app) as client:
            response = await client.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


class TestReady:
    async def test_a_migrated_database_is_ready(self, app: FastAPI) -> None:
        async with _root(app) as client:
            response = await client.get("/ready")
        assert response.status_code == 200, response.text
        assert set(response.json()["schema"]) == head_revisions()

    async def test_a_schema_behind_the_head_is_not_ready(
        self, app: FastAPI, state: AppState
    ) -> None:
        async with state.engine.begin() as conn:
            heads = list(
                (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars()
            )
            await conn.execute(text("UPDATE alembic_version SET version_num = 'behind'"))
        try:
            async with _root(app) as client:
                response = await client.get("/ready")
        finally:
            # The PostgreSQL database is shared by the session's tests (and the servers they
            # start, which migrate it): put the real heads back.
            async with state.engine.begin() as conn:
                await conn.execute(text("DELETE FROM alembic_version"))
                for head in heads:
                    await conn.execute(
                        text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": head}
                    )
        assert response.status_code == 503
        assert "dukenet db upgrade" in response.json()["reason"]
        assert response.json()["database"] == ["behind"]

    async def test_an_unreachable_database_is_not_ready(
        self, app: FastAPI, state: AppState
    ) -> None:
        original = state.engine
        # Nothing listens on port 9 (discard) on loopback: the connection is refused.
        state.engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")
        try:
            async with _root(app) as client:
                response = await client.get("/ready")
        finally:
            await state.engine.dispose()
            state.engine = original
        assert response.status_code == 503
        assert response.json()["reason"].startswith("database:")
