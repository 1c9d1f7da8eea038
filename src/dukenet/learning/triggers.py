"""Retraining triggers (DESIGN.md "Formulas"): N new outcomes, a schedule, a drop of the rolling
success rate, drift of the task distribution; an admin's request is handled by the API.

Each trigger yields a key naming the baseline (how many outcomes the last successful run used),
the trigger and the attempt, e.g. ``outcomes-after:200#0``. Training runs are unique on that key,
so two trainers that see the same state train once, and a failed run is retried under the next
attempt number, at most ``MAX_FAILED_RUNS_PER_TRIGGER`` times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from scipy import stats
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.config import Settings
from dukenet.learning import repository

MAX_FAILED_RUNS_PER_TRIGGER = 3


@dataclass(frozen=True)
class Trigger:
    """A trigger that fired: its name, unique key and a human-readable reason."""

    name: str
    key: str
    reason: str


@dataclass(frozen=True)
class DriftResult:
    """Two-sample Kolmogorov–Smirnov tests of each task feature, reference vs recent.

    ``p_values`` maps feature → p-value; ``min_p_adjusted`` is the smallest p-value times the
    number of features (Bonferroni), capped at 1.
    """

    p_values: dict[str, float]
    min_p_adjusted: float
    n_reference: int
    n_recent: int


def task_feature_columns(descriptions: list[str], complexities: list[int]) -> dict[str, np.ndarray]:
    """Return the scalar task features the drift test compares: complexity, log description
    length (characters) and word count."""
    return {
        "complexity": np.asarray(complexities, dtype=float),
        "log_length": np.log1p([len(d) for d in descriptions]),
        "words": np.asarray([len(d.split()) for d in descriptions], dtype=float),
    }


def drift_test(reference: dict[str, np.ndarray], recent: dict[str, np.ndarray]) -> DriftResult:
    """Run a two-sample KS test per feature (scipy.stats.ks_2samp) with a Bonferroni correction.

    Raises:
        ValueError: the two samples do not have the same features, or one is empty.
    """
    if reference.keys() != recent.keys():
        raise ValueError("reference and recent samples need the same features")
    n_ref = len(next(iter(reference.values())))
    n_new = len(next(iter(recent.values())))
    if n_ref == 0 or n_new == 0:
        raise ValueError("drift needs two non-empty samples")
    p_values = {
        name: float(stats.ks_2samp(reference[name], recent[name]).pvalue) for name in reference
    }
    adjusted = min(1.0, min(p_values.values()) * len(p_values))
    return DriftResult(
        p_values=p_values, min_p_adjusted=adjusted, n_reference=n_ref, n_recent=n_new
    )


async def _keyed(session: AsyncSession, name: str, baseline: int) -> str | None:
    prefix = f"{name}-after:{baseline}#"
    failures = await repository.failed_runs_with_prefix(session, prefix)
    if failures >= MAX_FAILED_RUNS_PER_TRIGGER:
        return None
    return f"{prefix}{failures}"


async def due_trigger(
    session: AsyncSession, settings: Settings, *, now: datetime
) -> Trigger | None:
    """Return the first enabled trigger that fires, checking N new outcomes, the success-rate
    drop, drift and the schedule in that order; None when nothing is due.

    The success-rate drop is a crossing: the rolling rate of the last ``success_drop_window``
    outcomes was at or above ``success_drop_threshold`` at the last training and is below it
    now. Drift compares up to ``drift_window`` outcomes before the last training with those
    after it (``drift_test``). Both need ``trigger_min_new_outcomes`` new outcomes.
    """
    enabled = settings.retrain_triggers
    total = await repository.count_outcomes(session)
    last = await repository.last_successful_run(session)
    baseline = last.outcomes_used if last is not None else 0
    new = total - baseline
    if new <= 0:
        return None
    candidates: list[tuple[str, str]] = []
    if "outcomes" in enabled and new >= settings.retrain_every_n:
        candidates.append(("outcomes", f"{new} new outcomes ≥ {settings.retrain_every_n}"))
    enough_new = new >= settings.trigger_min_new_outcomes
    if "success-drop" in enabled and enough_new and last is not None:
        rate = await rolling_success_rate(
            session,
            window=settings.success_drop_window,
            success_threshold=settings.success_threshold,
        )
        before = last.metrics.get("rolling_success_rate")
        if isinstance(before, float) and before >= settings.success_drop_threshold > rate:
            candidates.append(
                (
                    "success-drop",
                    f"rolling success {rate:.3f} < {settings.success_drop_threshold} "
                    f"(was {before:.3f})",
                )
            )
    if "drift" in enabled and enough_new and baseline >= settings.trigger_min_new_outcomes:
        window = settings.drift_window
        reference = await repository.outcome_features(
            session, offset=max(0, baseline - window), limit=min(baseline, window)
        )
        recent = await repository.outcome_features(session, offset=baseline, limit=window)
        drift = drift_test(task_feature_columns(*reference), task_feature_columns(*recent))
        if drift.min_p_adjusted < settings.drift_p_value:
            candidates.append(
                ("drift", f"KS p={drift.min_p_adjusted:.2g} < {settings.drift_p_value}")
            )
    if (
        "schedule" in enabled
        and last is not None
        and last.finished_at is not None
        and now - last.finished_at >= timedelta(seconds=settings.retrain_schedule_s)
    ):
        candidates.append(("schedule", f"{settings.retrain_schedule_s:.0f} s since last run"))
    for name, reason in candidates:
        key = await _keyed(session, name, baseline)
        if key is not None:
            return Trigger(name=name, key=key, reason=reason)
    return None


async def recent_success_counts(
    session: AsyncSession, *, window: int, success_threshold: float
) -> tuple[int, int]:
    """Return (successes, outcomes) over the last ``window`` outcomes of every agent, a success
    being ``Outcome.succeeded(success_threshold)``."""
    return await repository.recent_success_counts(
        session, None, window=window, success_threshold=success_threshold
    )


async def rolling_success_rate(
    session: AsyncSession, *, window: int, success_threshold: float
) -> float:
    """Return the success rate (``quality >= success_threshold``) of the last ``window`` outcomes
    (nan when there are none)."""
    successes, total = await recent_success_counts(
        session, window=window, success_threshold=success_threshold
    )
    return successes / total if total else float("nan")
