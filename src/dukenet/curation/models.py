"""ORM model of a curator's decision on a task's result."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, str_enum, utcnow


class CurationAction(StrEnum):
    """What a curator decided: ``approve`` (the result is good), ``ideal_response`` (here is
    the answer it should have been; the result was not), ``router_label`` (this agent should
    have been chosen), ``discard`` (keep the task out of every dataset)."""

    APPROVE = "approve"
    IDEAL_RESPONSE = "ideal_response"
    ROUTER_LABEL = "router_label"
    DISCARD = "discard"


class CurationDecision(IdMixin, Base):
    """One curator decision on a task's result, with who made it and when.

    ``task_version`` is the queue item's version the curator saw (``curation.service``); a
    decision on a task that changed since is refused. ``quality`` is the curator's grade in
    [0, 1] given to the outcome (null for ``router_label`` and ``discard``).
    """

    __tablename__ = "curation_decision"
    __table_args__ = (Index("ix_curation_decision_task_created", "task_id", "created_at"),)

    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task.id"))
    curator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"))
    action: Mapped[CurationAction] = mapped_column(str_enum(CurationAction, "curation_action"))
    quality: Mapped[float | None] = mapped_column(Float)
    ideal_response: Mapped[str | None] = mapped_column(Text)
    router_agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agent.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    task_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
