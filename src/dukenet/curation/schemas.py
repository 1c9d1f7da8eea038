"""API schemas of the curation queue and curators' decisions."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import Field, model_validator

from dukenet.curation.models import CurationAction
from dukenet.kit.schema import Schema
from dukenet.learning.models import LabelSource
from dukenet.tasks.models import TaskStatus


class CurationReason(StrEnum):
    """Why a task is in the queue: the buyer ``rejected``, rated low (``low_rating``: 1-2 or
    thumbs down) or ``corrected`` the result; an evaluator failed it (``evaluator_failed``) or
    could not judge it (``evaluator_error``); its routing looks wrong (``routing_suspect``: the
    chosen agent failed while the receipt gave another agent a higher predicted success, or a
    cheaper one at least as high, or the same buyer's identical task succeeded elsewhere)."""

    REJECTED = "rejected"
    LOW_RATING = "low_rating"
    CORRECTED = "corrected"
    EVALUATOR_FAILED = "evaluator_failed"
    EVALUATOR_ERROR = "evaluator_error"
    ROUTING_SUSPECT = "routing_suspect"


class CurationDecisionRead(Schema):
    """A curator's decision as recorded: who, when, what."""

    id: uuid.UUID
    task_id: uuid.UUID
    curator_id: uuid.UUID
    action: CurationAction
    quality: float | None
    ideal_response: str | None
    router_agent_id: uuid.UUID | None
    note: str
    task_version: str
    created_at: datetime


class CurationItemRead(Schema):
    """A task in the queue: its reasons, result, label and the last decision on it.
    ``version`` changes whenever the task, its labels or its feedback change; send it back with
    a decision."""

    task_id: uuid.UUID
    version: str
    reasons: list[CurationReason]
    description: str
    complexity: int
    status: TaskStatus
    agent_id: uuid.UUID
    result_text: str | None
    quality: float
    label_source: LabelSource
    rating: int | None
    thumbs_up: bool | None
    correction: str | None
    rejection_reason: str | None
    evaluation_error: str | None
    suggested_agent_ids: list[uuid.UUID]
    created_at: datetime
    decision: CurationDecisionRead | None


class CurationDecisionCreate(Schema):
    """A curator's decision on the task at ``version`` (from the queue).

    ``approve`` grades the result ``quality`` (default 1.0); ``ideal_response`` needs the
    answer it should have been and grades the result ``quality`` (default 0.0);
    ``router_label`` needs ``router_agent_id``; ``discard`` keeps the task out of datasets.
    """

    action: CurationAction
    version: str = Field(min_length=1, max_length=64)
    quality: float | None = Field(default=None, ge=0.0, le=1.0)
    ideal_response: str | None = Field(default=None, min_length=1, max_length=1_000_000)
    router_agent_id: uuid.UUID | None = None
    note: str = Field(default="", max_length=10_000)

    @model_validator(mode="after")
    def _fields_fit_action(self) -> CurationDecisionCreate:
        if self.action is CurationAction.IDEAL_RESPONSE and not self.ideal_response:
            raise ValueError("ideal_response is required for action ideal_response")
        if self.action is CurationAction.ROUTER_LABEL and self.router_agent_id is None:
            raise ValueError("router_agent_id is required for action router_label")
        if self.action in (CurationAction.ROUTER_LABEL, CurationAction.DISCARD) and (
            self.quality is not None
        ):
            raise ValueError(f"quality does not apply to action {self.action.value}")
        return self
