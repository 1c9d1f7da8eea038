"""Model registry endpoints (admins): versions, status, train, promote, rollback."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Query, status

from dukenet.deps import AdminUser, Session, State
from dukenet.errors import Conflict
from dukenet.kit.openapi import error_responses
from dukenet.learning import repository, service, triggers, tuning
from dukenet.learning.schemas import (
    AliasEventRead,
    LearningCurvePoint,
    ModelMetricsRead,
    ModelStatusRead,
    ModelVersionRead,
    ShadowReportRead,
    TrainingRunRead,
)

router = APIRouter(prefix="/model", tags=["model"])


@router.get("/versions", response_model=list[ModelVersionRead])
async def versions(admin: AdminUser, session: Session) -> list[ModelVersionRead]:
    """List every model version, oldest first, marking the champion."""
    champion = await service.champion_version(session)
    return [
        ModelVersionRead.model_validate(v).model_copy(update={"is_champion": v.version == champion})
        for v in await service.list_versions(session)
    ]


@router.get("/status", response_model=ModelStatusRead)
async def model_status(admin: AdminUser, session: Session, state: State) -> ModelStatusRead:
    """Show the champion, the number of outcomes and the last training run."""
    runs = await repository.runs(session, limit=1)
    total = await repository.count_outcomes(session)
    latest = await repository.latest_version(session)
    return ModelStatusRead(
        champion_version=await service.champion_version(session),
        versions=len(await service.list_versions(session)),
        outcomes=total,
        outcomes_since_last_training=total
        - await repository.last_successful_outcomes_used(session),
        retrain_every_n=state.settings.retrain_every_n,
        last_run=TrainingRunRead.model_validate(runs[0]) if runs else None,
        success_threshold=state.settings.success_threshold,
        last_promotion=ModelVersionRead.model_validate(latest).promotion if latest else None,
    )


@router.get("/metrics", response_model=ModelMetricsRead)
async def model_metrics(admin: AdminUser, session: Session, state: State) -> ModelMetricsRead:
    """Return every version's held-out metrics by outcomes seen, and the rolling success rate."""
    window = state.settings.success_drop_window
    rate = await triggers.rolling_success_rate(
        session, window=window, success_threshold=state.settings.success_threshold
    )
    return ModelMetricsRead(
        champion_version=await service.champion_version(session),
        learning_curve=[
            LearningCurvePoint(
                version=v.version,
                outcomes_seen=v.outcomes_seen,
                roc_auc=_finite(v.metrics.get("roc_auc")),
                brier=_finite(v.metrics.get("brier")),
                f1=_finite(v.metrics.get("f1")),
                promoted=v.promoted,
                created_at=v.created_at,
                ece=_finite(v.metrics.get("ece")),
                policy_value=_finite(_nested(v.metrics, "policy", "challenger", "dr")),
                champion_policy_value=_finite(_nested(v.metrics, "policy", "champion", "dr")),
                promotion_low=_finite(_nested(v.metrics, "promotion", "low")),
                promotion_high=_finite(_nested(v.metrics, "promotion", "high")),
                policy_rows=_int(_nested(v.metrics, "policy", "n_rows")),
            )
            for v in await service.list_versions(session)
        ],
        rolling_success_rate=None if math.isnan(rate) else rate,
        rolling_window=window,
        outcomes=await repository.count_outcomes(session),
    )


def _finite(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _nested(metrics: dict[str, Any], *keys: str) -> object:
    """Return ``metrics[k1][k2]...`` or None where a level is missing."""
    value: object = metrics
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


@router.get("/runs", response_model=list[TrainingRunRead])
async def training_runs(
    admin: AdminUser, session: Session, limit: int = Query(default=100, ge=1, le=1_000)
) -> list[TrainingRunRead]:
    """List the most recent training runs, newest first: trigger, status, times and log."""
    return [TrainingRunRead.model_validate(r) for r in await repository.runs(session, limit=limit)]


@router.get("/alias-events", response_model=list[AliasEventRead])
async def alias_events(
    admin: AdminUser, session: Session, limit: int = Query(default=200, ge=1, le=1_000)
) -> list[AliasEventRead]:
    """List the alias history, newest first: who moved which alias to which version, when."""
    events = await repository.all_alias_events(session, limit=limit)
    return [AliasEventRead.model_validate(e) for e in events]


@router.get("/shadow", response_model=ShadowReportRead)
async def shadow(admin: AdminUser, session: Session) -> ShadowReportRead:
    """Report the challenger's would-be decisions on live tasks beside the champion's."""
    return await service.shadow_report(session)


@router.post("/challenger/{version}", response_model=ShadowReportRead)
async def set_challenger(version: int, admin: AdminUser, session: Session) -> ShadowReportRead:
    """Put ``version`` in shadow: it scores every new task beside the champion without acting."""
    await service.set_challenger(session, version)
    await session.commit()
    return await service.shadow_report(session)


@router.delete("/challenger", status_code=status.HTTP_204_NO_CONTENT)
async def clear_challenger(admin: AdminUser, session: Session) -> None:
    """Stop shadow scoring."""
    await service.set_challenger(session, None)
    await session.commit()


@router.post(
    "/train",
    status_code=status.HTTP_201_CREATED,
    response_model=TrainingRunRead,
    responses=error_responses(400, 503),
)
async def train(admin: AdminUser, state: State) -> TrainingRunRead:
    """Train a challenger now (an admin's trigger) with the newest tuned configuration, if any;
    it is promoted only if it beats the champion."""
    async with state.sessionmaker() as session:
        config = await tuning.training_config(session, seed=state.settings.split_seed)
    result = await service.train(
        state.sessionmaker,
        models_dir=state.settings.models_dir,
        trigger="admin",
        trigger_key=await service.admin_trigger_key(),
        config=config,
        split_seed=state.settings.split_seed,
        success_window=state.settings.success_drop_window,
        success_threshold=state.settings.success_threshold,
        reference_price_sat=state.settings.reference_price_sat,
        gate=service.promotion_gate(state.settings),
    )
    if result is None:
        raise Conflict("another trainer claimed this trigger")
    return TrainingRunRead.model_validate(result.run)


@router.post("/promote/{version}", response_model=ModelVersionRead)
async def promote(version: int, admin: AdminUser, session: Session) -> ModelVersionRead:
    """Make ``version`` the champion (moves the alias; nothing is copied)."""
    row = await service.promote(session, version, reason=f"admin {admin.email}", actor=admin.email)
    await session.commit()
    return ModelVersionRead.model_validate(row).model_copy(update={"is_champion": True})


@router.post("/rollback", response_model=ModelVersionRead)
async def rollback(admin: AdminUser, session: Session) -> ModelVersionRead:
    """Return the champion alias to the previous champion."""
    row = await service.rollback(session, actor=admin.email)
    await session.commit()
    return ModelVersionRead.model_validate(row).model_copy(update={"is_champion": True})
