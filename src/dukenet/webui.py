"""Serves the browser app (``web/dist``) at ``/`` with an SPA fallback, and dumps the OpenAPI
document the app's typed client is generated from (``python -m dukenet.webui openapi FILE``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, Response

# Paths the SPA fallback never answers: the API, the OpenAI-compatible surface, docs, metrics.
RESERVED_PREFIXES = ("api", "v1", "docs", "redoc", "openapi.json", "metrics")


def default_dist_dir() -> Path:
    """Return ``web/dist`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "web" / "dist"


def _is_reserved(path: str) -> bool:
    first = path.split("/", 1)[0]
    return first in RESERVED_PREFIXES


def mount_web_ui(app: FastAPI, dist_dir: Path) -> bool:
    """Serve the built UI in ``dist_dir`` at ``/``: a file that exists is sent as it is, any other
    path outside the reserved prefixes (``/api``, ``/v1``, ``/docs``, ``/metrics``) gets
    ``index.html`` so that the browser's router handles it. Returns False (and mounts nothing)
    when ``dist_dir/index.html`` is missing, i.e. the UI was not built."""
    root = dist_dir.resolve()
    index = root / "index.html"
    if not index.is_file():
        return False

    @app.get("/{path:path}", include_in_schema=False)
    async def web_ui(path: str, request: Request) -> Response:
        """Return a built asset, or the app's ``index.html`` for a client-side route."""
        if _is_reserved(path):
            raise HTTPException(404, "Not Found")
        candidate = (root / path).resolve()
        if path and candidate.is_relative_to(root) and candidate.is_file():
            immutable = candidate.parent.name == "assets"
            headers = {"Cache-Control": "public, max-age=31536000, immutable"} if immutable else {}
            return FileResponse(candidate, headers=headers)
        if path.startswith("assets/"):
            raise HTTPException(404, "Not Found")
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    return True


def openapi_document() -> dict[str, object]:
    """Return the API's OpenAPI document as ``create_app`` builds it (no database is opened)."""
    from dukenet.config import Settings
    from dukenet.main import create_app

    return create_app(Settings(web_ui=False)).openapi()


def main(argv: list[str] | None = None) -> int:
    """``openapi FILE``: write the OpenAPI document to FILE (sorted keys, trailing newline)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "openapi":
        print("usage: python -m dukenet.webui openapi FILE", file=sys.stderr)
        return 2
    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    Path(args[1]).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
