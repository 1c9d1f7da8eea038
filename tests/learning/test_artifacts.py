"""Model artifacts in the database: an API process on another machine (here: another
``var_dir``) serves the champion the trainer wrote elsewhere, and the bytes are checked
against their SHA-256 before they are loaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from dukenet.config import Settings
from dukenet.kit.state import AppState
from dukenet.learning import repository, service
from dukenet.learning.models import ModelArtifact
from dukenet.learning.trainer import Trainer
from dukenet.main import create_app
from tests.factories import create_admin, credit, register
from tests.learning.test_registry import _market_with_outcomes


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Retrain every 30 outcomes so a few dozen tasks make a champion."""
    return settings.model_copy(update={"retrain_every_n": 30, "routing_seed": 7})


async def _champion(client: httpx.AsyncClient, state: AppState) -> int:
    await _market_with_outcomes(client, state, 30)
    await Trainer(state.sessionmaker, state.settings).run_once()
    async with state.sessionmaker() as session:
        version = await service.champion_version(session)
    assert version == 1
    return version


class TestArtifactsInTheDatabase:
    async def test_another_process_without_the_file_serves_the_champion(
        self, client: httpx.AsyncClient, state: AppState, settings: Settings, tmp_path: Path
    ) -> None:
        version = await _champion(client, state)
        async with state.sessionmaker() as session:
            stored = await repository.artifact_content(session, version)
            sha = await repository.artifact_sha256(session, version)
        local = (state.settings.models_dir / f"v{version}.skops").read_bytes()
        assert stored == local and sha == hashlib.sha256(local).hexdigest()

        other = settings.model_copy(update={"var_dir": tmp_path / "another-machine"})
        assert not (other.models_dir / f"v{version}.skops").exists()
        app = create_app(other)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b/api/v2") as c:
                second: AppState = app.state.dukenet
                _, admin = await create_admin(second)
                buyer, headers = await register(c)
                await credit(c, admin, buyer["id"], 10**9)
                response = await c.post(
                    "/tasks", headers=headers, json={"description": "Fix it.", "complexity": 2}
                )
        assert response.status_code == 201, response.text
        task = response.json()
        assert task["model_version"] == version  # routed by the champion, not the fallback
        assert all(0 < c["p_success"] < 1 for c in task["routing"]["candidates"])
        assert not (other.models_dir / f"v{version}.skops").exists()  # served from the DB

    async def test_a_stale_local_file_is_passed_over_and_bad_bytes_refused(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        version = await _champion(client, state)
        path = state.settings.models_dir / f"v{version}.skops"
        path.write_bytes(b"not the artifact the database holds")
        async with state.sessionmaker() as session:
            row = await repository.get_version(session, version)
            assert row is not None
            router = await service.load_router(session, row)  # from the database's bytes
            assert router.agents
            await session.execute(
                update(ModelArtifact)
                .where(ModelArtifact.version == version)
                .values(content=b"tampered")
            )
            with pytest.raises(ValueError, match="SHA-256"):
                await service.load_router(session, row)
            await session.rollback()
