"""Monitoring endpoints: Prometheus exposition and the admins' system overview."""

from __future__ import annotations

from fastapi import APIRouter, Response

from dukenet.deps import AdminUser, Session, State
from dukenet.monitoring import service
from dukenet.monitoring.schemas import SystemMetricsRead

router = APIRouter(tags=["monitoring"])
metrics_router = APIRouter()


@router.get("/admin/metrics", response_model=SystemMetricsRead)
async def system_metrics(admin: AdminUser, session: Session) -> SystemMetricsRead:
    """Return task counts, users, agents, success rate, sat transacted and the champion."""
    return await service.system_metrics(session)


@metrics_router.get("/metrics", include_in_schema=False)
async def prometheus(state: State) -> Response:
    """Prometheus exposition of this process's metrics."""
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
