"""The browser app as FastAPI serves it (SPA fallback), and the committed client's freshness."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from dukenet.config import Settings
from dukenet.main import create_app
from dukenet.webui import openapi_document

WEB = Path(__file__).resolve().parents[1] / "web"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><div id=root></div>")
    (root / "assets" / "app-123.js").write_text("console.log(1)")
    (root / "favicon.svg").write_text("<svg/>")
    return root


@pytest.fixture
async def ui(dist: Path, settings: Settings) -> FastAPI:
    return create_app(settings.model_copy(update={"web_dist_dir": dist}))


async def _get(app: FastAPI, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return await c.get(path)


class TestSpaFallback:
    async def test_client_routes_get_the_index_and_assets_are_served(self, ui: FastAPI) -> None:
        for path in ("/", "/tasks", "/tasks/1b4e28ba-2fa1-11d2-883f-0016d3cca427", "/models/3"):
            response = await _get(ui, path)
            assert response.status_code == 200, path
            assert "id=root" in response.text
            assert response.headers["cache-control"] == "no-cache"
        asset = await _get(ui, "/assets/app-123.js")
        assert asset.text == "console.log(1)"
        assert "immutable" in asset.headers["cache-control"]
        assert (await _get(ui, "/favicon.svg")).text == "<svg/>"

    async def test_reserved_paths_and_missing_assets_are_not_shadowed(self, ui: FastAPI) -> None:
        assert (await _get(ui, "/assets/gone.js")).status_code == 404
        for path in ("/api/v2/nothing-here", "/v1/models-unknown", "/docs/x", "/metrics/x"):
            response = await _get(ui, path)
            assert response.status_code == 404, path
            assert "id=root" not in response.text
        assert (await _get(ui, "/docs")).status_code == 200
        assert (await _get(ui, "/openapi.json")).json()["info"]["title"] == "DukeNET"

    async def test_a_path_outside_the_build_is_never_served(self, ui: FastAPI) -> None:
        response = await _get(ui, "/..%2F..%2Fetc%2Fpasswd")
        assert "root:" not in response.text

    async def test_no_build_means_no_ui_route(self, tmp_path: Path, settings: Settings) -> None:
        app = create_app(settings.model_copy(update={"web_dist_dir": tmp_path / "missing"}))
        assert (await _get(app, "/tasks")).status_code == 404


class TestGeneratedClient:
    def test_committed_openapi_document_matches_the_server(self) -> None:
        committed = json.loads((WEB / "openapi.json").read_text())
        assert committed == json.loads(json.dumps(openapi_document())), (
            "web/openapi.json is older than the server's schema: run `make web-client`"
        )

    @pytest.mark.skipif(
        shutil.which("node") is None or not (WEB / "node_modules" / ".bin").is_dir(),
        reason="needs node and `npm ci` in web/",
    )
    def test_committed_client_is_generated_from_the_document(self, tmp_path: Path) -> None:
        out = tmp_path / "schema.d.ts"
        subprocess.run(
            [
                str(WEB / "node_modules" / ".bin" / "openapi-typescript"),
                "openapi.json",
                "--default-non-nullable",
                "false",
                "-o",
                str(out),
            ],
            cwd=WEB,
            check=True,
            capture_output=True,
            timeout=120,
        )
        committed = (WEB / "src" / "client" / "schema.d.ts").read_text()
        assert out.read_text() == committed, "web/src/client is stale: run `make web-client`"
