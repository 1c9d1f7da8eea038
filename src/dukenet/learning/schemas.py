"""API schemas of the learning loop."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from dukenet.kit.schema import Schema
from dukenet.learning.models import TrainingRunStatus


class ModelVersionRead(Schema):
    """A model version with its held-out metrics."""

    version: int
    outcomes_seen: int
    metrics: dict[str, Any]
    config: dict[str, Any]
    promoted: bool
    is_champion: bool = False
    created_at: datetime


class TrainingRunRead(Schema):
    """One training run."""

    id: uuid.UUID
    trigger: str
    trigger_key: str
    status: TrainingRunStatus
    outcomes_used: int
    metrics: dict[str, Any]
    log: str
    started_at: datetime
    finished_at: datetime | None


class LearningCurvePoint(Schema):
    """One model version's held-out metrics against the outcomes it saw."""

    version: int
    outcomes_seen: int
    roc_auc: float | None
    brier: float | None
    f1: float | None
    promoted: bool
    created_at: datetime


class ModelMetricsRead(Schema):
    """The learning curve and the live success rates, for the dashboards."""

    champion_version: int | None
    learning_curve: list[LearningCurvePoint]
    rolling_success_rate: float | None
    rolling_window: int
    outcomes: int


class ShadowReportRead(Schema):
    """How the challenger, scoring live tasks in shadow, would have done beside the champion.

    ``challenger_success_snips`` is the self-normalised inverse-propensity estimate of the
    challenger's greedy policy's success rate from the logged (bandit) outcomes; ``matched`` is how
    many logged choices it agreed with (its effective sample). Prices in satoshis per task.
    """

    challenger_version: int | None
    tasks: int = 0
    finished: int = 0
    agreement_rate: float | None = None
    matched: int = 0
    live_success_rate: float | None = None
    challenger_success_snips: float | None = None
    live_mean_price_sat: float | None = None
    challenger_mean_price_sat: float | None = None


class ModelStatusRead(Schema):
    """The learning loop at a glance."""

    champion_version: int | None
    versions: int
    outcomes: int
    outcomes_since_last_training: int
    retrain_every_n: int
    last_run: TrainingRunRead | None
