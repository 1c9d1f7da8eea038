"""Monitoring endpoints: Prometheus exposition and the admins' system overview."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from fastapi.responses import StreamingResponse

from dukenet.deps import AdminUser, Session, State
from dukenet.monitoring import service
from dukenet.monitoring.exports import ExportFormat, ExportKind, export_rows
from dukenet.monitoring.schemas import SystemMetricsRead

router = APIRouter(tags=["monitoring"])
metrics_router = APIRouter()


@router.get("/admin/metrics", response_model=SystemMetricsRead)
async def system_metrics(admin: AdminUser, session: Session, state: State) -> SystemMetricsRead:
    """Return tasks by status, users, active agents, success rate, sat transacted, training
    samples and the production model version."""
    return await service.system_metrics(session, success_threshold=state.settings.success_threshold)


@router.get(
    "/admin/export/{kind}",
    responses={
        200: {
            "description": "The rows as CSV (format=csv) or JSON Lines (format=jsonl)",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def export(
    kind: ExportKind,
    admin: AdminUser,
    state: State,
    fmt: ExportFormat = Query(default=ExportFormat.CSV, alias="format"),
) -> StreamingResponse:
    """Stream every task, result or outcome as CSV or JSON Lines, oldest first."""
    media = "text/csv" if fmt is ExportFormat.CSV else "application/x-ndjson"
    return StreamingResponse(
        export_rows(state.sessionmaker, kind, fmt),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{kind.value}.{fmt.value}"'},
    )


@metrics_router.get("/metrics", include_in_schema=False)
async def prometheus(
    state: State, session: Session, authorization: str | None = Header(default=None)
) -> Response:
    """Prometheus exposition: this process's requests, task transitions, routing latency and
    settlements, and the database-wide tasks by status, ledger totals, active agents, ledger
    check, outcomes, training runs, queue age and runner leases. With
    ``DUKENET_METRICS_TOKEN`` set, only for ``Authorization: Bearer <token>`` (else 401)."""
    token = state.settings.metrics_token
    if token and not hmac.compare_digest(
        (authorization or "").encode(), f"Bearer {token}".encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a bearer token is required for /metrics",
            headers={"WWW-Authenticate": "Bearer"},
        )
    totals = await service.prometheus_totals(
        session, settings=state.settings, check_ledger=state.metrics.ledger_check_due()
    )
    await session.commit()  # end the read transaction before rendering
    state.metrics.set_totals(**totals)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
