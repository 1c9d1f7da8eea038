"""API schemas of the operator's view."""

from __future__ import annotations

import uuid
from datetime import datetime

from dukenet.kit.schema import Schema
from dukenet.tasks.models import TaskStatus


class AgentTaskRead(Schema):
    """A task one of the caller's agents ran (or holds), with how it ended: the recorded
    outcome (``success``, ``quality`` in [0, 1]), the buyer's 1-5 ``rating`` and
    ``rejection_reason``; the buyer is not shown."""

    id: uuid.UUID
    agent_id: uuid.UUID | None
    status: TaskStatus
    description: str
    complexity: int
    price_sat: int
    attempts: int
    created_at: datetime
    delivered_at: datetime | None
    finished_at: datetime | None
    rejection_reason: str | None
    success: bool | None = None
    quality: float | None = None
    rating: int | None = None
    thumbs_up: bool | None = None
