"""API schemas of feedback."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from dukenet.feedback.models import EvaluationStatus
from dukenet.kit.schema import Schema
from dukenet.learning.models import LabelSource


class FeedbackWrite(Schema):
    """Thumbs up/down, a 1-5 rating, a comment and/or a corrected answer (at least one)."""

    thumbs_up: bool | None = None
    rating: int | None = Field(default=None, ge=1, le=5)
    comment: str = Field(default="", max_length=10_000)
    correction: str | None = Field(default=None, min_length=1, max_length=1_000_000)

    @model_validator(mode="after")
    def _not_empty(self) -> FeedbackWrite:
        if (
            self.thumbs_up is None
            and self.rating is None
            and not self.comment
            and not self.correction
        ):
            raise ValueError("give at least one of thumbs_up, rating, comment, correction")
        return self


class FeedbackRead(FeedbackWrite):
    """Feedback as stored, with the quality it gave the outcome in [0, 1] (null if none)."""

    id: uuid.UUID
    result_id: uuid.UUID
    task_id: uuid.UUID
    outcome_quality: float | None = None
    created_at: datetime
    updated_at: datetime


class LabelRead(Schema):
    """One label given to a task's outcome: its source and kind, quality and confidence in
    [0, 1], whether it became the outcome's label, its evidence and who gave it."""

    id: uuid.UUID
    source: LabelSource
    kind: str
    quality: float
    confidence: float
    applied: bool
    detail: dict[str, Any]
    actor_id: uuid.UUID | None
    created_at: datetime


class EvaluationRead(Schema):
    """The task's evaluator and its verdict (``status`` pending, done or failed with
    ``error``); ``fee_sat`` is the judge's fee held from the buyer."""

    kind: str
    spec: dict[str, Any]
    status: EvaluationStatus
    quality: float | None
    detail: dict[str, Any]
    error: str | None
    fee_sat: int
    attempts: int


class OutcomeLabelsRead(Schema):
    """The label a task's outcome carries (quality, source, confidence), every label it was
    given (oldest first) and its evaluation, if the buyer asked for one."""

    task_id: uuid.UUID
    quality: float
    label_source: LabelSource
    label_confidence: float | None
    labels: list[LabelRead]
    evaluation: EvaluationRead | None


class AgreementRead(Schema):
    """How often a judge's pass/fail (quality >= the success threshold) matched one kind of
    reference label on the same outcomes: ``n`` outcomes, ``agreement`` the share that matched
    (null when n = 0) and Cohen's ``kappa`` (agreement beyond chance; null when undefined)."""

    n: int
    agreement: float | None
    kappa: float | None


class JudgeAgreementRead(Schema):
    """One judge agent's record: verdicts given, evaluations that failed (with the last
    reasons), and its agreement with buyers' and curators' labels on the same outcomes."""

    agent_id: uuid.UUID
    agent_name: str
    verdicts: int
    failures: int
    failure_reasons: list[str]
    buyer: AgreementRead
    curator: AgreementRead
