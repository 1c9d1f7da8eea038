"""ORM models of feedback on a task's result, its labels and its evaluation."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, TimestampMixin, str_enum, utcnow
from dukenet.learning.models import LabelSource


class Feedback(IdMixin, TimestampMixin, Base):
    """The buyer's typed scores on one result (one row per result, updated in place)."""

    __tablename__ = "feedback"
    __table_args__ = (CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),)

    result_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task_result.id"), unique=True)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task.id"), index=True)
    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"), index=True)
    thumbs_up: Mapped[bool | None]
    rating: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    correction: Mapped[str | None] = mapped_column(Text)


class OutcomeLabel(IdMixin, Base):
    """One label given to a task's outcome, kept even when a stronger one wins.

    ``kind`` names how it was given (``report``, ``exact_match``, ``choice``, ``number``,
    ``json_schema``, ``judge``, ``accept``, ``reject``, ``rating``, ``thumbs``, ``curator``);
    ``detail`` holds its evidence (the evaluator's verdict, the judge's reasoning, a reason);
    ``actor_id`` the user who gave it (buyer or curator), null for agents and evaluators.
    ``applied`` says whether it became the outcome's label when it was given.
    """

    __tablename__ = "outcome_label"
    __table_args__ = (
        CheckConstraint("quality >= 0 AND quality <= 1", name="quality_range"),
        Index("ix_outcome_label_task_created", "task_id", "created_at"),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task.id"))
    source: Mapped[LabelSource] = mapped_column(str_enum(LabelSource, "label_source"))
    kind: Mapped[str] = mapped_column(String(40))
    quality: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    applied: Mapped[bool]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvaluationStatus(StrEnum):
    """``pending`` until the result is checked; ``done`` with a verdict; ``failed`` when the
    check could not give one (the judge failed, timed out or answered off-rubric: ``error``
    says why and the outcome keeps its previous label)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class Evaluation(IdMixin, TimestampMixin, Base):
    """The evaluator a buyer asked for on a task (``spec``: ``feedback.evaluators``) and its
    verdict: ``quality`` in [0, 1], ``detail`` (extracted answer, score, reasoning).

    A judge's fee (``fee_sat``, the judge agent's price at the task's complexity) is held from
    the buyer at task creation in the ``escrow:judge:<task>`` account and paid to the judge
    agent when it answers, or refunded when it cannot.
    """

    __tablename__ = "evaluation"

    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[EvaluationStatus] = mapped_column(
        str_enum(EvaluationStatus, "evaluation_status"), default=EvaluationStatus.PENDING
    )
    judge_agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agent.id"))
    fee_sat: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    quality: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
