"""Probes for load balancers and orchestrators: ``/health`` (liveness) and ``/ready``
(readiness: the database answers and its schema is at the migrations' head)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from dukenet.deps import State
from dukenet.migrate import head_revisions

health_router = APIRouter(tags=["health"])

READY_TIMEOUT_S = 2.0


@health_router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process serves requests (touches nothing else; restart it if this fails)."""
    return {"status": "ok"}


@health_router.get("/ready", responses={503: {"description": "Not ready; the body says why."}})
async def ready(state: State) -> JSONResponse:
    """Readiness: the database answers within 2 s and its schema is at the migrations' head
    (503 with the reason otherwise: take the process out of the load balancer, do not restart)."""
    heads = await asyncio.to_thread(head_revisions)
    try:
        async with asyncio.timeout(READY_TIMEOUT_S), state.engine.connect() as conn:
            rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            current = {row[0] for row in rows}
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return JSONResponse(
            {"status": "unavailable", "reason": f"database: {type(exc).__name__}"},
            status_code=503,
        )
    if current != heads:
        return JSONResponse(
            {
                "status": "unavailable",
                "reason": "schema not at the migrations' head (run dukenet db upgrade)",
                "database": sorted(current),
                "head": sorted(heads),
            },
            status_code=503,
        )
    return JSONResponse({"status": "ok", "schema": sorted(current)})
