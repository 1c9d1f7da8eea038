"""ORM models of tasks and their results."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, TimestampMixin, str_enum, utcnow


class TaskStatus(StrEnum):
    """``created → assigned → executing → delivered → completed | rejected``; ``failed`` (the
    agent failed or ran out of attempts) and ``cancelled`` (by the buyer before execution).

    ``delivered``: the agent reported success and the payment waits in escrow until the buyer
    accepts, or the dispute window passes (``completed``), or the buyer rejects (``rejected``,
    refunded).
    """

    CREATED = "created"
    ASSIGNED = "assigned"
    EXECUTING = "executing"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.REJECTED, TaskStatus.FAILED, TaskStatus.CANCELLED}
)


class Task(IdMixin, TimestampMixin, Base):
    """A buyer's task: its payment is held in escrow from creation until it is settled.

    ``escrow_sat`` is what the buyer paid into escrow at creation; ``price_sat`` is the price of
    the agent that runs it (lower after a failover to a cheaper agent; never higher). On success
    the agent is paid ``price_sat`` and the rest of the escrow returns to the buyer.

    ``routing`` is the router's receipt (model version, candidates with predicted success and
    price, the choice and its propensity, failovers). The lease fields belong to the runner
    executing it; a retried task is not claimed before ``available_at`` (its backoff).
    ``assigned_at`` is when the task was last offered to its current agent (reset each time one
    left unclaimed for ``claim_timeout_s`` is offered again, to another agent or the same); one
    still unclaimed ``claim_deadline_s`` after ``available_at`` (or ``created_at``) is refunded.
    ``accept_by`` is the end of the dispute window of a delivered task.
    """

    __tablename__ = "task"
    __table_args__ = (
        CheckConstraint("complexity BETWEEN 1 AND 10", name="complexity_range"),
        CheckConstraint("price_sat >= 0", name="price_non_negative"),
        UniqueConstraint("buyer_id", "idempotency_key", name="uq_task_buyer_idempotency_key"),
        Index("ix_task_queue", "status", "agent_id", "created_at"),
        Index("ix_task_buyer_created", "buyer_id", "created_at"),
        Index("ix_task_status_accept_by", "status", "accept_by"),
        CheckConstraint("escrow_sat >= price_sat", name="escrow_covers_price"),
        Index("ix_task_api_key_created", "api_key_id", "created_at"),
    )

    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"))
    description: Mapped[str] = mapped_column(Text)
    complexity: Mapped[int] = mapped_column(Integer)
    max_price_sat: Mapped[int | None] = mapped_column(BigInteger)
    cost_weight: Mapped[float] = mapped_column(Float)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[TaskStatus] = mapped_column(str_enum(TaskStatus, "task_status"))
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agent.id"))
    price_sat: Mapped[int] = mapped_column(BigInteger, default=0)
    escrow_sat: Mapped[int] = mapped_column(BigInteger, default=0)
    propensity: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[int | None] = mapped_column(Integer)
    routing: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_token: Mapped[uuid.UUID | None]
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(index=True)
    error: Mapped[str | None] = mapped_column(Text)
    assigned_at: Mapped[datetime | None]
    available_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    accept_by: Mapped[datetime | None]
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None]
    # a chat request's conversation and sampling parameters ({"messages": [...], "params": {...}},
    # tasks.schemas.ChatPayload) passed to ``llm`` agents; None for a plain description
    payload: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # the buyer's own reference for the task (e.g. a replayed dataset's task id), handed to the
    # runner with the task; None when the buyer gave none
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    # the buyer marked the task private: nothing of it leaves the database (datasets, exports)
    private: Mapped[bool] = mapped_column(default=False)
    # the buyer's API key the task was paid through (spend limits, usage), None for a session
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_key.id", ondelete="SET NULL"), default=None
    )


class TaskResult(IdMixin, Base):
    """What an agent returned for a task; one per task, written once (idempotency key)."""

    __tablename__ = "task_result"

    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task.id"), unique=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agent.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    attempt: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    success: Mapped[bool]
    confidence: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
