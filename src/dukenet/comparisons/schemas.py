"""API schemas of pairwise comparisons."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from dukenet.comparisons.models import ComparisonOrigin, ComparisonPayment, ComparisonStatus
from dukenet.kit.schema import Schema
from dukenet.learning.models import LabelSource


class CompareRequest(Schema):
    """Ask a second agent to answer one of the buyer's tasks: ``agent_id`` names it (unset:
    Duke's choice among the agents other than the first); ``payment`` is ``both`` or
    ``winner`` (unset: DUKENET_COMPARISON_PAYMENT)."""

    agent_id: uuid.UUID | None = None
    payment: ComparisonPayment | None = None


class PickRequest(Schema):
    """The better answer of a comparison: ``winner_task_id`` is one of its two tasks.
    ``loser_failed`` says the other answer is wrong, not only worse (it is then labelled a
    failure; otherwise its label is left as it was and only the preference is recorded)."""

    winner_task_id: uuid.UUID
    reason: str | None = Field(default=None, max_length=2_000)
    loser_failed: bool = False


class ComparisonRead(Schema):
    """A comparison: its two tasks (``task_id`` routed by Duke as usual, ``sibling_task_id``
    for the second agent), how it came about (``origin``, ``probability`` of being compared),
    how it pays, and the pick. In ``winner`` mode both answers wait for the pick until
    ``pick_by`` (set once both are delivered); ``settlement_transaction_id`` is then the
    winner's payment (the loser's refund is a transaction of the loser's task)."""

    id: uuid.UUID
    buyer_id: uuid.UUID
    task_id: uuid.UUID
    sibling_task_id: uuid.UUID
    payment: ComparisonPayment
    status: ComparisonStatus
    origin: ComparisonOrigin
    probability: float
    pick_by: datetime | None
    winner_task_id: uuid.UUID | None
    picked_by_id: uuid.UUID | None
    pick_source: LabelSource | None
    reason: str | None
    loser_failed: bool
    picked_at: datetime | None
    settlement_transaction_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
