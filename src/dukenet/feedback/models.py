"""ORM model of feedback on a task's result."""

from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, TimestampMixin


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
