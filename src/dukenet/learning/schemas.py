"""API schemas of the learning loop."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import model_validator

from dukenet.kit.schema import Schema
from dukenet.learning.models import TrainingRunStatus


class CalibrationBinRead(Schema):
    """One reliability bin of held-out predictions in ``(low, high]``: their mean predicted
    P(success), the observed success rate and the number of rows."""

    low: float
    high: float
    mean_predicted: float
    observed_rate: float
    count: int


class PromotionRead(Schema):
    """The promotion gate's decision on a version and every figure it used.

    ``rule``: ``guardrail`` (a champion existed: promoted unless worse beyond noise, the upper
    bound ``high`` below 0, or the estimate ``difference`` below ``-margin``), ``non-inferiority``
    (promoted unless worse beyond the margin,
    iff the one-sided ``level`` lower bound ``low`` of challenger - champion held-out policy value,
    estimated with ``estimator``, is above ``-margin``), ``policy-bootstrap`` (the superiority
    test: iff the lower bound ``low`` of the two-sided ``level`` interval is above 0) or
    ``first-model`` (promoted unless its held-out Brier score is
    worse than the base-rate prior's beyond noise: ``brier_low > 0``). Policy values are mean
    normalised utility ``success - price / value`` over ``n_rows`` held-out logged decisions;
    ``champion_value`` is the logging policy's own value under ``first-model``.
    """

    promote: bool
    rule: str
    reason: str
    estimator: str
    n_rows: int
    challenger_value: float | None = None
    champion_value: float | None = None
    difference: float | None = None
    low: float | None = None
    high: float | None = None
    brier_difference: float | None = None
    brier_low: float | None = None
    brier_high: float | None = None
    level: float
    n_boot: int
    seed: int
    margin: float = 0.0


class ModelVersionRead(Schema):
    """A model version with its held-out metrics; ``promotion``, ``ece`` and ``calibration`` are
    typed copies of the same entries of ``metrics`` (None/empty for versions trained before
    them)."""

    version: int
    outcomes_seen: int
    metrics: dict[str, Any]
    config: dict[str, Any]
    promoted: bool
    is_champion: bool = False
    created_at: datetime
    ece: float | None = None
    calibration: list[CalibrationBinRead] = []
    promotion: PromotionRead | None = None

    @model_validator(mode="after")
    def _typed_metrics(self) -> ModelVersionRead:
        """Fill the typed fields from ``metrics`` when they were not given."""
        if self.ece is None and isinstance(self.metrics.get("ece"), int | float):
            self.ece = float(self.metrics["ece"])
        if not self.calibration and isinstance(self.metrics.get("calibration"), list):
            self.calibration = [
                CalibrationBinRead.model_validate(b) for b in self.metrics["calibration"]
            ]
        if self.promotion is None and isinstance(self.metrics.get("promotion"), dict):
            self.promotion = PromotionRead.model_validate(self.metrics["promotion"])
        return self


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


class AliasEventRead(Schema):
    """One move of a model alias: which alias, to which version from which, by whom, when
    (``actor`` is None for the trainer's automatic promotion)."""

    id: uuid.UUID
    alias: str
    version: int
    previous_version: int | None
    action: str
    reason: str
    actor: str | None
    created_at: datetime


class LearningCurvePoint(Schema):
    """One model version's held-out metrics against the outcomes it saw.

    ``policy_value`` / ``champion_policy_value``: the doubly robust estimates of the version's and
    the then champion's greedy policy value (mean ``success - price / value``) on ``policy_rows``
    held-out logged decisions; ``promotion_low``/``promotion_high``: the bootstrap interval of
    their difference (None for a first model).
    """

    version: int
    outcomes_seen: int
    roc_auc: float | None
    brier: float | None
    f1: float | None
    promoted: bool
    created_at: datetime
    ece: float | None = None
    policy_value: float | None = None
    champion_policy_value: float | None = None
    promotion_low: float | None = None
    promotion_high: float | None = None
    policy_rows: int | None = None


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
    """The learning loop at a glance; ``last_promotion`` is the gate's decision on the newest
    version, ``success_threshold`` the quality from which an outcome counts as a success."""

    champion_version: int | None
    versions: int
    outcomes: int
    outcomes_since_last_training: int
    retrain_every_n: int
    last_run: TrainingRunRead | None
    success_threshold: float = 0.5
    last_promotion: PromotionRead | None = None
