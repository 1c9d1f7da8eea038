"""Outcomes, the model registry (versions, the ``champion`` alias) and training runs."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.errors import BadRequest, Conflict, NotFound
from dukenet.kit.orm import utcnow
from dukenet.learning import repository, triggers
from dukenet.learning.evaluation import classifier_metrics, held_out_split, ips_estimate
from dukenet.learning.features import TaskFeatures
from dukenet.learning.models import (
    ModelAlias,
    ModelAliasEvent,
    ModelVersion,
    Outcome,
    TrainingRun,
    TrainingRunStatus,
)
from dukenet.learning.router import DukeRouter, OutcomeSample, RouterConfig
from dukenet.learning.schemas import ShadowReportRead

CHAMPION = "champion"
CHALLENGER = "challenger"


def content_key(description: str, complexity: int) -> str:
    """Return a stable key of a task's content; the held-out split hashes it, so the same prompt
    never sits on both sides and every retraining puts an outcome on the same side."""
    return hashlib.sha256(f"{complexity}\x00{description}".encode()).hexdigest()[:32]


async def record_outcome(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    agent_id: uuid.UUID,
    description: str,
    complexity: int,
    success: bool,
    price_sat: int,
    propensity: float,
    model_version: int | None,
    routing: dict[str, Any],
    cost_usd: float | None = None,
    latency_ms: float | None = None,
) -> Outcome:
    """Write the outcome of a finished task (one per task); ``quality`` is 1.0 or 0.0 here."""
    outcome = Outcome(
        task_id=task_id,
        agent_id=agent_id,
        description=description,
        complexity=complexity,
        success=success,
        quality=1.0 if success else 0.0,
        price_sat=price_sat,
        cost_usd=cost_usd,
        latency_ms=latency_ms,
        propensity=propensity,
        model_version=model_version,
        routing=routing,
    )
    session.add(outcome)
    await session.flush()
    return outcome


def to_samples(outcomes: Sequence[Outcome]) -> list[OutcomeSample]:
    """Turn outcome rows into router training samples keyed by content (see ``content_key``)."""
    samples = [
        OutcomeSample(
            task_id=content_key(o.description, o.complexity),
            description=o.description,
            complexity=o.complexity,
            agent=str(o.agent_id),
            success=o.success,
        )
        for o in outcomes
    ]
    samples.sort(key=lambda s: (s.task_id, s.agent, s.success))
    return samples


def pair_probabilities(router: DukeRouter, samples: Sequence[OutcomeSample]) -> np.ndarray:
    """Return P(success) of each sample's own (task, agent) pair, shape (n,)."""
    if not samples:
        return np.zeros(0)
    agents = sorted({s.agent for s in samples})
    column = {a: i for i, a in enumerate(agents)}
    tasks = [TaskFeatures(s.description, s.complexity) for s in samples]
    matrix = router.predict_proba(tasks, agents)
    return matrix[np.arange(len(samples)), [column[s.agent] for s in samples]]


async def list_versions(session: AsyncSession) -> Sequence[ModelVersion]:
    """Return every model version, oldest first."""
    return await repository.versions(session)


async def champion_version(session: AsyncSession) -> int | None:
    """Return the version the ``champion`` alias points at, or None before the first promotion."""
    return await alias_version(session, CHAMPION)


async def alias_version(session: AsyncSession, name: str) -> int | None:
    """Return the version an alias points at, or None if the alias is not set."""
    alias = await repository.get_alias(session, name)
    return alias.version if alias is not None else None


async def set_challenger(session: AsyncSession, version: int | None) -> None:
    """Point ``challenger`` at ``version`` (scored in shadow on live tasks), or clear it.

    The trainer sets it to each version that did not beat the champion.

    Raises:
        NotFound: no such version.
    """
    if version is not None and await repository.get_version(session, version) is None:
        raise NotFound(f"model version {version} not found")
    alias = await repository.get_alias(session, CHALLENGER, for_update=True)
    if version is None:
        if alias is not None:
            await session.delete(alias)
    elif alias is None:
        session.add(ModelAlias(name=CHALLENGER, version=version))
    else:
        alias.version = version
        alias.updated_at = utcnow()
    await session.flush()


async def _move_champion(
    session: AsyncSession, version: ModelVersion, *, action: str, reason: str
) -> ModelVersion:
    alias = await repository.get_alias(session, CHAMPION, for_update=True)
    previous = alias.version if alias is not None else None
    if alias is None:
        session.add(ModelAlias(name=CHAMPION, version=version.version))
    else:
        alias.version = version.version
        alias.updated_at = utcnow()
    version.promoted = True
    session.add(
        ModelAliasEvent(
            alias=CHAMPION,
            version=version.version,
            previous_version=previous,
            action=action,
            reason=reason,
        )
    )
    await session.flush()
    return version


async def promote(session: AsyncSession, version: int, *, reason: str = "admin") -> ModelVersion:
    """Point the ``champion`` alias at ``version`` (an admin's override of the promotion gate).

    Raises:
        NotFound: no such version.
    """
    row = await repository.get_version(session, version)
    if row is None:
        raise NotFound(f"model version {version} not found")
    if await alias_version(session, CHALLENGER) == version:
        await set_challenger(session, None)
    return await _move_champion(session, row, action="promote", reason=reason)


async def rollback(session: AsyncSession) -> ModelVersion:
    """Move ``champion`` back to the version it pointed at before its current one.

    Raises:
        Conflict: there is no champion, or no earlier one to return to.
    """
    current = await champion_version(session)
    if current is None:
        raise Conflict("no champion to roll back")
    earlier = [
        e.version
        for e in await repository.alias_events(session, CHAMPION)
        if e.action in ("promote", "auto-promote") and e.version < current
    ]
    if not earlier:
        raise Conflict(f"no champion before version {current}")
    row = await repository.get_version(session, max(earlier))
    assert row is not None
    return await _move_champion(
        session, row, action="rollback", reason=f"rolled back from v{current}"
    )


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What one training run produced."""

    run: TrainingRun
    version: ModelVersion | None


async def train(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    models_dir: Path,
    trigger: str,
    trigger_key: str,
    config: RouterConfig,
    split_seed: int = 0,
    success_window: int = 100,
) -> TrainResult | None:
    """Run one training: claim the trigger, fit a challenger on the train side of the held-out
    split (in a worker thread), compare it with the champion on the held-out side, save it as a
    new version and promote it if its held-out Brier score is lower.

    Returns None when another trainer already claimed ``trigger_key``. A failure marks the run
    ``failed`` with its error in ``log`` and re-raises.
    """
    async with sessionmaker() as session:
        run = TrainingRun(
            trigger=trigger,
            trigger_key=trigger_key,
            status=TrainingRunStatus.RUNNING,
            split_seed=split_seed,
            config=dataclasses.asdict(config),
        )
        session.add(run)
        try:
            await session.commit()
        except IntegrityError:
            return None
        outcomes = await repository.all_outcomes(session)
        rolling = await triggers.rolling_success_rate(session, window=success_window)
        champion = await champion_version(session)
        champion_row = await repository.get_version(session, champion) if champion else None
    try:
        samples = to_samples(outcomes)
        result = await asyncio.to_thread(
            _fit_and_compare,
            samples,
            config,
            split_seed,
            champion_row.artifact_path if champion_row else None,
        )
    except Exception as exc:
        async with sessionmaker() as session:
            failed = await session.get(TrainingRun, run.id)
            assert failed is not None
            failed.status = TrainingRunStatus.FAILED
            failed.log = f"{type(exc).__name__}: {exc}"
            failed.finished_at = utcnow()
            await session.commit()
        raise
    router, raw_metrics, beats_champion = result
    metrics = json_safe(raw_metrics)
    async with sessionmaker() as session:
        latest = await repository.latest_version(session)
        number = (latest.version if latest else 0) + 1
        path = models_dir / f"v{number}.skops"
        await asyncio.to_thread(_save_artifact, router, path)
        version = ModelVersion(
            version=number,
            run_id=run.id,
            artifact_path=str(path),
            outcomes_seen=len(outcomes),
            config=dataclasses.asdict(config),
            metrics=metrics,
        )
        session.add(version)
        await session.flush()
        if beats_champion:
            reason = (
                "first version"
                if champion is None
                else f"held-out Brier {metrics['brier']:.4f} "
                f"< champion {metrics['champion_brier']:.4f}"
            )
            await _move_champion(session, version, action="auto-promote", reason=reason)
            await set_challenger(session, None)
        else:
            await set_challenger(session, version.version)
        done = await session.get(TrainingRun, run.id)
        assert done is not None
        done.status = TrainingRunStatus.SUCCEEDED
        done.outcomes_used = len(outcomes)
        done.metrics = {**metrics, "rolling_success_rate": rolling}
        done.finished_at = utcnow()
        done.log = f"v{number}: {'promoted' if beats_champion else 'kept champion'}"
        await session.commit()
        return TrainResult(run=done, version=version)


def _fit_and_compare(
    samples: list[OutcomeSample], config: RouterConfig, split_seed: int, champion_path: str | None
) -> tuple[DukeRouter, dict[str, Any], bool]:
    if len(samples) < 2:
        raise BadRequest("need at least 2 outcomes to train")
    train_rows, held_out = held_out_split(samples, seed=split_seed)
    router = DukeRouter.fit(train_rows, config)
    y = np.array([s.success for s in held_out], dtype=float)
    metrics: dict[str, Any] = {
        **classifier_metrics(y, pair_probabilities(router, held_out)),
        "n_train": len(train_rows),
        "n_held_out": len(held_out),
    }
    if champion_path is None:
        return router, metrics, True
    champion = DukeRouter.load(Path(champion_path))
    champion_metrics = classifier_metrics(y, pair_probabilities(champion, held_out))
    metrics["champion_brier"] = champion_metrics["brier"]
    metrics["champion_roc_auc"] = champion_metrics["roc_auc"]
    return router, metrics, bool(metrics["brier"] < champion_metrics["brier"])


def json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    """Return ``metrics`` with NaN and infinities as None (JSON has no NaN; PostgreSQL refuses
    it), e.g. ROC-AUC on a held-out split with a single class."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in metrics.items()
    }


def _save_artifact(router: DukeRouter, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    router.save(path)


async def shadow_report(session: AsyncSession) -> ShadowReportRead:
    """Compare the challenger's shadow decisions with what the market did (see
    ``ShadowReportRead``); empty when there is no challenger."""
    version = await alias_version(session, CHALLENGER)
    if version is None:
        return ShadowReportRead(challenger_version=None)
    row = await repository.get_version(session, version)
    assert row is not None
    shadowed = [
        o
        for o in await repository.outcomes_since(session, row.created_at)
        if (o.routing.get("shadow") or {}).get("model_version") == version
    ]
    tasks = await repository.count_shadowed_tasks(session, since=row.created_at)
    if not shadowed:
        return ShadowReportRead(challenger_version=version, tasks=tasks)
    match = np.array([o.routing["shadow"]["agent_id"] == str(o.agent_id) for o in shadowed])
    success = np.array([o.success for o in shadowed], dtype=float)
    propensity = np.array([o.propensity for o in shadowed], dtype=float)
    snips = ips_estimate(success, propensity, match.astype(float), self_normalized=True)
    return ShadowReportRead(
        challenger_version=version,
        tasks=tasks,
        finished=len(shadowed),
        agreement_rate=float(match.mean()),
        matched=int(match.sum()),
        live_success_rate=float(success.mean()),
        challenger_success_snips=None if np.isnan(snips) else snips,
        live_mean_price_sat=float(np.mean([o.price_sat for o in shadowed])),
        challenger_mean_price_sat=float(
            np.mean([o.routing["shadow"]["price_sat"] for o in shadowed])
        ),
    )


async def reap_stale_runs(session: AsyncSession, *, timeout_s: float) -> int:
    """Mark runs that have been ``running`` for over ``timeout_s`` seconds as failed (their
    trainer died), so their trigger is retried; return how many."""
    stale = await repository.stale_runs(
        session, started_before=utcnow() - timedelta(seconds=timeout_s)
    )
    for run in stale:
        run.status = TrainingRunStatus.FAILED
        run.finished_at = utcnow()
        run.log = (
            run.log + "\n" if run.log else ""
        ) + f"no result after {timeout_s:.0f} s: trainer lost"
    await session.flush()
    return len(stale)


async def admin_trigger_key() -> str:
    """Return a fresh trigger key for an admin's training request."""
    return f"admin:{uuid.uuid4()}"
