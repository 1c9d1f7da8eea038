"""Outcomes, the model registry (versions, the ``champion`` alias) and training runs."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.agents import service as agents_service
from dukenet.errors import BadRequest, Conflict, NotFound
from dukenet.kit.orm import utcnow
from dukenet.learning import repository, triggers
from dukenet.learning.evaluation import (
    LoggedDecision,
    PolicyTerms,
    PromotionDecision,
    PromotionGate,
    calibration_curve,
    classifier_metrics,
    greedy_policy_evaluation,
    held_out_split,
    ips_estimate,
    logging_policy_summary,
    policy_promotion_decision,
    success_labels,
)
from dukenet.learning.features import TaskFeatures
from dukenet.learning.models import (
    LabelSource,
    ModelAlias,
    ModelAliasEvent,
    ModelArtifact,
    ModelVersion,
    Outcome,
    TrainingRun,
    TrainingRunStatus,
)
from dukenet.learning.router import DukeRouter, OutcomeSample, RouterConfig
from dukenet.learning.schemas import ShadowReportRead

if TYPE_CHECKING:
    from dukenet.config import Settings

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
    quality: float | None = None,
    label_source: LabelSource = LabelSource.AGENT,
    label_confidence: float | None = None,
) -> Outcome:
    """Write the outcome of a finished task (one per task), labelled by ``label_source`` with
    ``label_confidence`` in [0, 1] (``feedback.labels`` relabels it later).

    ``quality`` in [0, 1] grades the result (e.g. a judged 1-10 score mapped by
    ``evaluation.score_to_quality``); it defaults to 1.0 on success and 0.0 on failure. ``success``
    stays the task's own verdict; learning labels an outcome a success iff ``quality >=
    success_threshold`` (see ``to_samples``).

    Raises:
        BadRequest: ``quality`` is NaN or outside [0, 1].
    """
    if quality is None:
        quality = 1.0 if success else 0.0
    elif not 0.0 <= quality <= 1.0:  # also refuses NaN
        raise BadRequest(f"quality must be in [0, 1], got {quality}")
    outcome = Outcome(
        task_id=task_id,
        agent_id=agent_id,
        description=description,
        complexity=complexity,
        success=success,
        quality=float(quality),
        price_sat=price_sat,
        cost_usd=cost_usd,
        latency_ms=latency_ms,
        propensity=propensity,
        model_version=model_version,
        routing=routing,
        label_source=label_source,
        label_confidence=label_confidence,
    )
    session.add(outcome)
    await session.flush()
    return outcome


async def list_prices(session: AsyncSession) -> dict[str, float]:
    """Return every agent's list price, ``{str(agent id): base_price_sat}``: the covariate of
    the router's price prior (``RouterConfig.price_prior``)."""
    return {
        str(agent.id): float(agent.base_price_sat)
        for agent in await agents_service.list_agents(session)
    }


def to_samples(
    outcomes: Sequence[Outcome], *, success_threshold: float = 0.5
) -> list[OutcomeSample]:
    """Turn outcome rows into router training samples keyed by content (see ``content_key``).

    The label is ``quality >= success_threshold`` (``evaluation.success_labels``), the same for
    training, classifier metrics and the policy reward. The order of ``outcomes`` is kept: pass
    them in arrival order (``repository.all_outcomes``), which the stratified split relies on.
    """
    labels = success_labels(np.array([o.quality for o in outcomes]), success_threshold)
    return [
        OutcomeSample(
            task_id=content_key(o.description, o.complexity),
            description=o.description,
            complexity=o.complexity,
            agent=str(o.agent_id),
            success=bool(label),
        )
        for o, label in zip(outcomes, labels, strict=True)
    ]


def logged_decision(
    outcome: Outcome,
    *,
    cost_weight: float | None,
    reference_price_sat: int,
    success_threshold: float = 0.5,
) -> LoggedDecision | None:
    """Return the routing decision logged with ``outcome`` (bandit feedback), or None when it
    cannot be evaluated off-policy: no candidates in its routing receipt, the agent that did the
    task is not the one routed to (a failover), or no valid propensity or cost weight.

    The value of a success is ``reference_price_sat * complexity / cost_weight`` as in
    ``market.routing.value_sat`` (``inf`` when ``cost_weight`` is 0).
    """
    routing = outcome.routing or {}
    candidates = routing.get("candidates") or []
    agent = str(outcome.agent_id)
    if not candidates or routing.get("agent_id") != agent or cost_weight is None:
        return None
    ids = [str(c.get("agent_id")) for c in candidates]
    if agent not in ids or not 0.0 < outcome.propensity <= 1.0:
        return None
    value = math.inf if cost_weight <= 0 else reference_price_sat * outcome.complexity / cost_weight
    return LoggedDecision(
        description=outcome.description,
        complexity=outcome.complexity,
        candidates=tuple(ids),
        prices_sat=tuple(float(c.get("price_sat", 0)) for c in candidates),
        chosen=ids.index(agent),
        propensity=float(outcome.propensity),
        success=outcome.quality >= success_threshold,
        value_sat=value,
    )


def candidate_probabilities(
    router: DukeRouter, decisions: Sequence[LoggedDecision], *, chunk: int = 2048
) -> list[np.ndarray]:
    """Return the router's P(success) of each decision's candidates, one (K_i,) array each."""
    out: list[np.ndarray] = []
    for start in range(0, len(decisions), chunk):
        part = decisions[start : start + chunk]
        agents = sorted({a for d in part for a in d.candidates})
        column = {a: j for j, a in enumerate(agents)}
        matrix = router.predict_proba(
            [TaskFeatures(d.description, d.complexity) for d in part], agents
        )
        out.extend(matrix[i, [column[a] for a in d.candidates]] for i, d in enumerate(part))
    return out


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
    session: AsyncSession,
    version: ModelVersion,
    *,
    action: str,
    reason: str,
    actor: str | None = None,
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
            actor=actor,
        )
    )
    await session.flush()
    return version


async def promote(
    session: AsyncSession, version: int, *, reason: str = "admin", actor: str | None = None
) -> ModelVersion:
    """Point the ``champion`` alias at ``version`` (an admin's override of the promotion gate;
    ``actor`` is the admin's email, kept in the alias history).

    Raises:
        NotFound: no such version.
    """
    row = await repository.get_version(session, version)
    if row is None:
        raise NotFound(f"model version {version} not found")
    if await alias_version(session, CHALLENGER) == version:
        await set_challenger(session, None)
    return await _move_champion(session, row, action="promote", reason=reason, actor=actor)


async def rollback(session: AsyncSession, *, actor: str | None = None) -> ModelVersion:
    """Move ``champion`` back to the version it pointed at before its current one (``actor``:
    the admin's email, kept in the alias history).

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
        session, row, action="rollback", reason=f"rolled back from v{current}", actor=actor
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
    success_threshold: float = 0.5,
    reference_price_sat: int = 100_000,
    gate: PromotionGate | None = None,
) -> TrainResult | None:
    """Run one training: claim the trigger, fit a challenger on the train side of the stratified
    held-out split (in a worker thread), evaluate it and the champion on the held-out side, save it
    as a new version and promote it iff ``evaluation.policy_promotion_decision`` says so.

    The gate (``gate``, default ``PromotionGate()``: non-inferiority) compares the two greedy
    policies off-policy (doubly robust, reward ``evaluation.normalized_utility``) on the held-out
    logged decisions, with a paired bootstrap of ``gate.n_boot`` resamples seeded with
    ``split_seed`` and importance weights capped at ``gate.weight_clip`` (clipped doubly robust,
    ``PolicyTerms.weight_clip``; None: uncapped); the first version is judged against the
    base-rate prior's held-out Brier score. Every figure (classifier metrics, calibration, both
    policies' estimates, the interval) goes to the run's and the version's ``metrics``.

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
        cost_weights = await repository.outcome_cost_weights(session)
        rolling = await triggers.rolling_success_rate(
            session, window=success_window, success_threshold=success_threshold
        )
        champion = await champion_version(session)
        champion_row = await repository.get_version(session, champion) if champion else None
        agent_prices = await list_prices(session)
    try:
        samples = to_samples(outcomes, success_threshold=success_threshold)
        decisions = [
            logged_decision(
                o,
                cost_weight=cost_weights.get(o.task_id),
                reference_price_sat=reference_price_sat,
                success_threshold=success_threshold,
            )
            for o in outcomes
        ]
        if champion_row is not None:
            async with sessionmaker() as session:
                champion_router = await load_router(session, champion_row)
        else:
            champion_router = None
        router, raw_metrics, decision = await asyncio.to_thread(
            _fit_and_compare,
            samples,
            decisions,
            config,
            split_seed,
            champion_router,
            gate or PromotionGate(),
            agent_prices,
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
    metrics = json_safe(
        {
            **raw_metrics,
            "success_threshold": success_threshold,
            "split_seed": split_seed,
            "champion_version": champion,
        }
    )
    async with sessionmaker() as session:
        latest = await repository.latest_version(session)
        number = (latest.version if latest else 0) + 1
        path = models_dir / f"v{number}.skops"
        content = await asyncio.to_thread(_save_artifact, router, path)
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
        # the bytes too: API processes on other machines load it from here (load_router)
        session.add(
            ModelArtifact(
                version=number,
                sha256=hashlib.sha256(content).hexdigest(),
                size_bytes=len(content),
                content=content,
            )
        )
        await session.flush()
        if decision.promote:
            await _move_champion(
                session, version, action="auto-promote", reason=decision.reason[:500]
            )
            await set_challenger(session, None)
        else:
            await set_challenger(session, version.version)
        done = await session.get(TrainingRun, run.id)
        assert done is not None
        done.status = TrainingRunStatus.SUCCEEDED
        done.outcomes_used = len(outcomes)
        done.metrics = {**metrics, "rolling_success_rate": rolling}
        done.finished_at = utcnow()
        done.log = f"v{number}: {'promoted' if decision.promote else 'kept champion'}: " + (
            decision.reason
        )
        await session.commit()
        return TrainResult(run=done, version=version)


def _fit_and_compare(
    samples: list[OutcomeSample],
    decisions: list[LoggedDecision | None],
    config: RouterConfig,
    split_seed: int,
    champion: DukeRouter | None,
    gate: PromotionGate,
    agent_prices: Mapping[str, float] | None = None,
) -> tuple[DukeRouter, dict[str, Any], PromotionDecision]:
    """Fit on the train side; score the challenger (and the champion) on the held-out side.

    ``decisions[i]`` is the logged routing decision of ``samples[i]`` (None when it has none);
    ``agent_prices`` (agent id -> base price in satoshis) feed ``RouterConfig.price_prior``.
    """
    if len(samples) < 2:
        raise BadRequest("need at least 2 outcomes to train")
    train_rows, _ = held_out_split(samples, seed=split_seed)
    router = DukeRouter.fit(train_rows, config, agent_prices=agent_prices)
    metrics, decision = judge_challenger(
        router, champion, samples, decisions, split_seed=split_seed, gate=gate
    )
    return router, metrics, decision


def judge_challenger(
    router: DukeRouter,
    champion: DukeRouter | None,
    samples: Sequence[OutcomeSample],
    decisions: Sequence[LoggedDecision | None],
    *,
    split_seed: int,
    gate: PromotionGate,
) -> tuple[dict[str, Any], PromotionDecision]:
    """Score a fitted challenger (and the champion) on the held-out side of ``samples`` and
    decide its promotion with ``gate`` (``evaluation.policy_promotion_decision``).

    ``samples`` are all outcomes (the split is recomputed with ``split_seed``, so only rows the
    challenger never trained on are used); ``decisions[i]`` is the logged routing decision of
    ``samples[i]`` (None when it has none). Returns the version's metrics (classifier metrics,
    calibration, both policies' off-policy estimates, ``promotion``: the decision with its
    evidence) and the decision. Pure and CPU-bound: call it from a worker thread.
    """
    train_rows, held_out = held_out_split(samples, seed=split_seed)
    held_keys = {s.task_id for s in held_out}
    live = [d for s, d in zip(samples, decisions, strict=True) if s.task_id in held_keys and d]
    weight_clip = gate.weight_clip
    y = np.array([s.success for s in held_out], dtype=float)
    p = pair_probabilities(router, held_out)
    train_rate = float(np.mean([s.success for s in train_rows])) if train_rows else 0.5
    p_prior = np.full(y.shape, train_rate)
    metrics: dict[str, Any] = {
        **classifier_metrics(y, p),
        **_calibration_metrics(y, p),
        "n_train": len(train_rows),
        "n_held_out": len(held_out),
        "train_positive_rate": train_rate if train_rows else None,
        "held_out_positive_rate": float(y.mean()) if y.size else None,
        "prior_brier": float(np.mean((p_prior - y) ** 2)) if y.size else None,
    }
    metrics["confusion_matrix"] = [[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]]
    evaluation = greedy_policy_evaluation(
        live, candidate_probabilities(router, live), weight_clip=weight_clip
    )
    policy: dict[str, Any] = {
        "estimator": "dr",
        "weight_clip": weight_clip,
        "reward": "success - price_sat / value_sat (normalised utility)",
        "n_rows": len(live),
        "challenger": evaluation.summary(),
        "champion": None,
        "logging": logging_policy_summary(live),
    }
    champion_terms: PolicyTerms | None = None
    if champion is not None:
        p_champion = pair_probabilities(champion, held_out)
        champion_metrics = classifier_metrics(y, p_champion)
        metrics["champion_brier"] = champion_metrics["brier"]
        metrics["champion_roc_auc"] = champion_metrics["roc_auc"]
        metrics["champion_ece"] = _calibration_metrics(y, p_champion)["ece"]
        champion_eval = greedy_policy_evaluation(
            live, candidate_probabilities(champion, live), weight_clip=weight_clip
        )
        policy["champion"] = champion_eval.summary()
        champion_terms = champion_eval.utility
    decision = policy_promotion_decision(
        evaluation.utility,
        champion_terms,
        y_true=y,
        p_challenger=p,
        p_prior=p_prior,
        estimator="dr",
        n_boot=gate.n_boot,
        level=gate.level,
        seed=split_seed,
        rule=gate.rule,
        margin=gate.margin,
    )
    if not held_out and decision.promote:
        # No held-out row: nothing was scored on data the model did not train on (#11).
        decision = dataclasses.replace(
            decision, promote=False, reason="no held-out rows: never promoted unscored"
        )
    metrics["policy"] = policy
    metrics["promotion"] = decision.as_json()
    return metrics, decision


def promotion_gate(settings: Settings) -> PromotionGate:
    """Return the promotion gate ``settings`` configure (``DUKENET_PROMOTION_*``)."""
    return PromotionGate(
        rule=settings.promotion_rule,
        margin=settings.promotion_margin,
        n_boot=settings.promotion_bootstrap,
        weight_clip=settings.promotion_weight_clip,
    )


def _calibration_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Return ``ece`` and ``calibration`` (10 reliability bins) of predictions ``p``."""
    calibration = calibration_curve(y, p, n_bins=10)
    return {"ece": calibration.ece, "calibration": calibration.as_json()}


def json_safe(value: Any) -> Any:
    """Return ``value`` with NaN and infinities as None, in nested dicts and lists too (JSON has
    no NaN; PostgreSQL refuses it), e.g. ROC-AUC on a held-out split with a single class."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _save_artifact(router: DukeRouter, path: Path) -> bytes:
    """Write the router's artifact to ``path`` and return the file's bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    router.save(path)
    return path.read_bytes()


async def load_router(session: AsyncSession, row: ModelVersion) -> DukeRouter:
    """Load a version's router from its local file when that file's SHA-256 is the stored
    artifact's, else from the artifact's bytes in the database (so a process on another
    machine, or with another ``var_dir``, serves it too); versions trained before artifacts
    were stored load from their file.

    Raises:
        ValueError: the stored bytes do not match their SHA-256, or are not a router.
    """
    expected = await repository.artifact_sha256(session, row.version)
    path = Path(row.artifact_path)
    if expected is None:
        return await asyncio.to_thread(DukeRouter.load, path)
    local = await asyncio.to_thread(_read_if_present, path)
    if local is not None and hashlib.sha256(local).hexdigest() == expected:
        return await asyncio.to_thread(DukeRouter.loads, local)
    stored = await repository.artifact_content(session, row.version)
    if stored is None or hashlib.sha256(stored).hexdigest() != expected:
        raise ValueError(f"the stored artifact of v{row.version} does not match its SHA-256")
    return await asyncio.to_thread(DukeRouter.loads, stored)


def _read_if_present(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


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
