"""Label provenance: every label an outcome is given, and which one it carries.

An outcome's ``quality`` comes from the strongest source that labelled it (``LABEL_RANK``:
agent < evaluator < buyer < curator); among labels of one source the newest wins. Every label
is kept as an ``OutcomeLabel`` row, so a relabel changes the one outcome row (it is never
counted twice) and the history shows who said what and when.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.errors import BadRequest, Conflict
from dukenet.feedback.models import OutcomeLabel
from dukenet.learning.models import LABEL_RANK, LabelSource, Outcome

AGENT_CONFIDENCE = 0.25
"""Trust in an agent's own report of success (it is paid when it says so)."""
REFERENCE_CONFIDENCE = 0.9
"""Trust in a deterministic check against the buyer's reference answer."""
JUDGE_CONFIDENCE = 0.6
"""Trust in an LLM judge's verdict before its agreement with buyers is known."""
BUYER_CONFIDENCE = 0.9
"""Trust in the buyer's accept, reject, rating or thumbs."""
CURATOR_CONFIDENCE = 1.0
"""Trust in a curator's decision."""


@dataclass(frozen=True)
class LabelChange:
    """What a label did: ``applied`` (it is the outcome's label now), ``quality_changed`` (the
    outcome's quality moved, so reputation must be recomputed), the label row."""

    applied: bool
    quality_changed: bool
    label: OutcomeLabel


def agent_label(success: bool, confidence: float | None) -> tuple[float, float]:
    """Return (quality, label confidence) of an agent's own report: 1.0/0.0 for success or
    failure; its confidence is ``AGENT_CONFIDENCE`` scaled by the agent's stated confidence in
    [0, 1] when it gave one."""
    quality = 1.0 if success else 0.0
    scale = 1.0 if confidence is None else max(0.0, min(1.0, confidence))
    return quality, AGENT_CONFIDENCE * scale


def record_initial(
    session: AsyncSession,
    outcome: Outcome,
    *,
    kind: str,
    detail: dict[str, Any] | None = None,
) -> OutcomeLabel:
    """Keep the label a new outcome was written with (``learning.service.record_outcome``) as
    its first ``OutcomeLabel`` row."""
    label = OutcomeLabel(
        task_id=outcome.task_id,
        source=outcome.label_source,
        kind=kind,
        quality=outcome.quality,
        confidence=outcome.label_confidence if outcome.label_confidence is not None else 0.0,
        applied=True,
        detail=detail or {},
    )
    session.add(label)
    return label


async def apply(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    source: LabelSource,
    kind: str,
    quality: float,
    confidence: float,
    success_threshold: float,
    detail: dict[str, Any] | None = None,
    actor_id: uuid.UUID | None = None,
) -> LabelChange:
    """Record a label on the task's outcome; it becomes the outcome's label when its source is
    at least as strong as the current one (``LABEL_RANK``), setting ``quality`` (in [0, 1]),
    ``success`` (``quality >= success_threshold``), ``label_source`` and ``label_confidence``.

    The caller recomputes the agent's reputation when ``quality_changed``.

    Raises:
        BadRequest: ``quality`` or ``confidence`` is outside [0, 1] (or NaN).
        Conflict: the task has no outcome yet (nothing finished to label).
    """
    if not 0.0 <= quality <= 1.0:
        raise BadRequest(f"quality must be in [0, 1], got {quality}")
    if not 0.0 <= confidence <= 1.0:
        raise BadRequest(f"confidence must be in [0, 1], got {confidence}")
    outcome = (
        await session.execute(select(Outcome).where(Outcome.task_id == task_id).with_for_update())
    ).scalar_one_or_none()
    if outcome is None:
        raise Conflict(f"task {task_id} has no outcome to label")
    applied = LABEL_RANK[source] >= LABEL_RANK[outcome.label_source]
    quality_changed = applied and outcome.quality != quality
    label = OutcomeLabel(
        task_id=task_id,
        source=source,
        kind=kind,
        quality=float(quality),
        confidence=float(confidence),
        applied=applied,
        detail=detail or {},
        actor_id=actor_id,
    )
    session.add(label)
    if applied:
        outcome.quality = float(quality)
        outcome.success = quality >= success_threshold
        outcome.label_source = source
        outcome.label_confidence = float(confidence)
    await session.flush()
    return LabelChange(applied=applied, quality_changed=quality_changed, label=label)


async def history(session: AsyncSession, task_id: uuid.UUID) -> Sequence[OutcomeLabel]:
    """Return every label given to the task's outcome, oldest first."""
    stmt = (
        select(OutcomeLabel)
        .where(OutcomeLabel.task_id == task_id)
        .order_by(OutcomeLabel.created_at, OutcomeLabel.id)
    )
    return (await session.execute(stmt)).scalars().all()
