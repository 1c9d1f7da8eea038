"""Hygiene: CSV exports cannot inject spreadsheet formulas, token answers are not cached,
/metrics can require a token, the embedded database and var/ are owner-only."""

from __future__ import annotations

import csv
import io
import stat
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from dukenet.config import Settings
from dukenet.db import create_engine
from dukenet.kit.state import AppState
from dukenet.monitoring.exports import csv_safe
from tests.factories import PASSWORD, create_admin, credit, register, replay_agent, submit_task


class TestCsvInjection:
    @pytest.mark.parametrize("value", ['=HYPERLINK("x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
    def test_formula_prefixes_are_escaped(self, value: str) -> None:
        assert csv_safe(value) == "'" + value

    def test_other_values_pass(self) -> None:
        assert csv_safe("plain") == "plain" and csv_safe(-3) == -3 and csv_safe(None) is None

    async def test_an_exported_description_is_not_a_formula(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        await replay_agent(client, admin, model="gpt-4-1106-preview")
        buyer, headers = await register(client)
        await credit(client, admin, buyer["id"], 10**8)
        payload = '=HYPERLINK("http://evil.example","click")'
        assert (await submit_task(client, headers, description=payload)).status_code == 201
        response = await client.get("/admin/export/tasks?format=csv", headers=admin)
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert rows[0]["description"] == "'" + payload


class TestHeaders:
    async def test_token_answers_are_not_cached(self, client: httpx.AsyncClient) -> None:
        user, _ = await register(client)
        login = await client.post(
            "/auth/login", json={"email": user["email"], "password": PASSWORD}
        )
        assert login.status_code == 200
        assert login.headers["cache-control"] == "no-store"


class TestMetricsToken:
    async def test_metrics_need_the_bearer_token_when_one_is_set(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        metrics = "http://test/metrics"
        assert (await client.get(metrics)).status_code == 200  # unset: open, as before
        state.settings = state.settings.model_copy(update={"metrics_token": "scrape-me"})
        refused = await client.get(metrics)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        wrong = await client.get(metrics, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await client.get(metrics, headers={"Authorization": "Bearer scrape-me"})
        assert ok.status_code == 200 and "dukenet" in ok.text


class TestOwnerOnlyFiles:
    async def test_the_embedded_database_and_var_are_owner_only(self, tmp_path: Path) -> None:
        settings = Settings(var_dir=tmp_path / "var")
        engine = create_engine(settings.resolved_database_url)
        await engine.dispose()
        settings.resolved_jwt_secret()
        var = tmp_path / "var"
        assert stat.S_IMODE(var.stat().st_mode) == 0o700
        assert stat.S_IMODE((var / "dukenet.db").stat().st_mode) == 0o600


class TestOfflineDocs:
    async def test_docs_load_their_assets_from_this_server(self, app: FastAPI) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            page = await c.get("/docs")
            assert page.status_code == 200
            assert (
                "cdn" not in page.text.lower() and "/docs/assets/swagger-ui-bundle.js" in page.text
            )
            for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
                response = await c.get(f"/docs/assets/{asset}")
                assert response.status_code == 200 and len(response.content) > 10_000
            redoc = await c.get("/redoc")  # ReDoc would load from a CDN: not served
            assert "cdn.jsdelivr.net" not in redoc.text
