"""API schemas of feedback."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field, model_validator

from dukenet.kit.schema import Schema


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
