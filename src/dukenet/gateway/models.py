"""ORM models of the gateway: API keys' spend limits, webhook endpoints and their outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, TimestampMixin, str_enum, utcnow


class ApiKeyLimit(TimestampMixin, Base):
    """Spend limits of one API key, in satoshis: per UTC day and in total (None: unlimited).

    The row is locked (``FOR UPDATE``) while a task paid through the key is created, so that
    racing calls cannot spend past a limit together.
    """

    __tablename__ = "api_key_limit"
    __table_args__ = (
        CheckConstraint("daily_limit_sat IS NULL OR daily_limit_sat >= 0", name="daily_limit"),
        CheckConstraint("total_limit_sat IS NULL OR total_limit_sat >= 0", name="total_limit"),
    )

    api_key_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_key.id", ondelete="CASCADE"), primary_key=True
    )
    daily_limit_sat: Mapped[int | None] = mapped_column(BigInteger)
    total_limit_sat: Mapped[int | None] = mapped_column(BigInteger)


class WebhookEndpoint(IdMixin, TimestampMixin, Base):
    """An HTTPS endpoint a user registered for task events; ``secret_encrypted`` is the
    endpoint's HMAC-SHA256 signing secret, encrypted with ``DUKENET_SECRET_KEY``."""

    __tablename__ = "webhook_endpoint"

    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    events: Mapped[list[Any]] = mapped_column(default=list)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(default=True)


class DeliveryStatus(StrEnum):
    """``pending`` (waiting for its next attempt) → ``delivered`` | ``failed`` (gave up)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(IdMixin, Base):
    """One event for one endpoint: the durable outbox row, written in the transaction of the
    task's state change, sent until it succeeds or runs out of attempts."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_due", "status", "next_attempt_at"),)

    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(40))
    task_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[DeliveryStatus] = mapped_column(
        str_enum(DeliveryStatus, "webhook_delivery_status")
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookAttempt(IdMixin, Base):
    """One try at sending a delivery: the HTTP status (None when no answer came), the error and
    the duration in ms."""

    __tablename__ = "webhook_attempt"

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_delivery.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
