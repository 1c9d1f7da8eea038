"""ORM model of a pairwise comparison: two tasks answering one request, and the pick."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, TimestampMixin, str_enum
from dukenet.learning.models import LabelSource


class ComparisonPayment(StrEnum):
    """Who is paid: ``both`` agents (each from its own escrow), or the ``winner`` only (the
    loser's escrow returns to the buyer in a refund of the loser's task, committed with the
    winner's payment)."""

    BOTH = "both"
    WINNER = "winner"


class ComparisonStatus(StrEnum):
    """``open`` until a pick (``picked``); ``void`` when a side failed, was rejected or was
    cancelled before the pick (no preference; the other side settles as a plain task);
    ``lapsed`` when, in ``winner`` mode, the pick window passed without a pick (Duke's own
    choice was paid, the second agent's escrow refunded)."""

    OPEN = "open"
    PICKED = "picked"
    VOID = "void"
    LAPSED = "lapsed"


class ComparisonOrigin(StrEnum):
    """Why the task was compared: the ``buyer`` asked, or the ``share`` drew it."""

    BUYER = "buyer"
    SHARE = "share"


class Comparison(IdMixin, TimestampMixin, Base):
    """Two tasks for one request: ``task_id`` routed by Duke as usual and ``sibling_task_id``
    for a second agent (Duke's choice among the others, with its own receipt and propensity,
    or the agent the buyer named).

    ``probability`` is the chance that this task was compared at all (1 when the buyer asked,
    the configured share when drawn). ``pick_window_s`` is the dispute window at creation: in
    ``winner`` mode both results wait, unpaid, this long after the later delivery for a pick.
    The pick is ``winner_task_id`` with who made it (``picked_by_id``, ``pick_source``: buyer
    or curator), when and why.
    """

    __tablename__ = "comparison"
    __table_args__ = (
        CheckConstraint("probability > 0 AND probability <= 1", name="probability_range"),
        CheckConstraint("task_id <> sibling_task_id", name="two_tasks"),
        Index("ix_comparison_buyer_created", "buyer_id", "created_at"),
        Index("ix_comparison_status_pick_by", "status", "pick_by"),
    )

    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"))
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task.id"), unique=True)
    sibling_task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task.id"), unique=True)
    payment: Mapped[ComparisonPayment] = mapped_column(
        str_enum(ComparisonPayment, "comparison_payment")
    )
    status: Mapped[ComparisonStatus] = mapped_column(
        str_enum(ComparisonStatus, "comparison_status")
    )
    origin: Mapped[ComparisonOrigin] = mapped_column(
        str_enum(ComparisonOrigin, "comparison_origin")
    )
    probability: Mapped[float] = mapped_column(Float)
    pick_window_s: Mapped[float] = mapped_column(Float)
    pick_by: Mapped[datetime | None]
    winner_task_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("task.id"))
    picked_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"))
    pick_source: Mapped[LabelSource | None] = mapped_column(
        str_enum(LabelSource, "comparison_pick_source")
    )
    reason: Mapped[str | None] = mapped_column(Text)
    loser_failed: Mapped[bool] = mapped_column(default=False)
    picked_at: Mapped[datetime | None]
    settlement_transaction_id: Mapped[uuid.UUID | None]
