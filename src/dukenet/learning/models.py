"""ORM models of the learning loop: outcomes, training runs, model versions and aliases."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.ext.hybrid import hybrid_method
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, str_enum, utcnow


class LabelSource(StrEnum):
    """Who said how good a result was, weakest first: the ``agent``'s own report, an
    ``evaluator`` (a reference check or an LLM judge), the ``buyer`` (accept, reject, rating,
    thumbs), a ``curator``. The outcome carries the label of the strongest source it has
    (the newest of that source); ``feedback.labels`` keeps every label given."""

    AGENT = "agent"
    EVALUATOR = "evaluator"
    BUYER = "buyer"
    CURATOR = "curator"


LABEL_RANK: dict[LabelSource, int] = {
    LabelSource.AGENT: 0,
    LabelSource.EVALUATOR: 1,
    LabelSource.BUYER: 2,
    LabelSource.CURATOR: 3,
}
"""Strength of each label source: a label replaces the outcome's if its rank is at least the
current one's."""


class Outcome(IdMixin, Base):
    """What happened when a task was routed to an agent: the router's training example.

    ``propensity`` is the probability the routing policy had of choosing this agent (for
    inverse-propensity off-policy evaluation); ``quality`` generalises ``success`` to [0, 1].
    ``label_source`` and ``label_confidence`` (in [0, 1]) say where ``quality`` comes from
    (``LabelSource``); a relabel updates this row, so an outcome is never counted twice.
    """

    __tablename__ = "outcome"
    __table_args__ = (Index("ix_outcome_agent_created", "agent_id", "created_at"),)

    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task.id"), unique=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agent.id"))
    description: Mapped[str] = mapped_column(Text)
    complexity: Mapped[int] = mapped_column(Integer)
    success: Mapped[bool]
    quality: Mapped[float] = mapped_column(Float)
    price_sat: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    propensity: Mapped[float] = mapped_column(Float)
    model_version: Mapped[int | None] = mapped_column(Integer)
    routing: Mapped[dict[str, Any]] = mapped_column(default=dict)
    label_source: Mapped[LabelSource] = mapped_column(
        str_enum(LabelSource, "label_source"), default=LabelSource.AGENT
    )
    label_confidence: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    @hybrid_method
    def succeeded(self, success_threshold: float) -> bool:
        """Return whether the outcome counts as a success: its current label's ``quality`` (the
        strongest source's, ``feedback.labels``) is at least ``success_threshold``.

        The one definition that reputation, the agent's stats and series and the learning loop
        count by; on the class it is the SQL expression (``Outcome.succeeded(t)`` in a query).
        Unlike the stored ``success`` it follows the threshold the settings give now.
        """
        return self.quality >= success_threshold


class TrainingRunStatus(StrEnum):
    """Lifecycle of a training run."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TUNE_TRIGGER = "tune"
"""``TrainingRun.trigger`` of a hyperparameter study (``learning.tuning``): it trains no version
and is not a training run for the triggers."""

FINETUNE_TRIGGERS = ("finetune-sft", "finetune-dpo")
"""``TrainingRun.trigger`` of a fine-tune of DukeNET's own model (``dukenet finetune``): it trains
a ``local`` agent's model, not a router version."""

NOT_ROUTER_TRIGGERS = (TUNE_TRIGGER, *FINETUNE_TRIGGERS)
"""Triggers of training runs that train no router version (the router's triggers skip them)."""


class TrainingRun(IdMixin, Base):
    """One attempt to train a challenger; ``trigger_key`` is unique so a trigger trains once.

    A fine-tune (``FINETUNE_TRIGGERS``) records the model directory it wrote in
    ``artifact_path`` and that directory's content hash (SHA-256) in ``artifact_sha256``.
    """

    __tablename__ = "training_run"

    trigger: Mapped[str] = mapped_column(String(40))
    trigger_key: Mapped[str] = mapped_column(String(120), unique=True)
    status: Mapped[TrainingRunStatus] = mapped_column(
        str_enum(TrainingRunStatus, "training_run_status")
    )
    outcomes_used: Mapped[int] = mapped_column(Integer, default=0)
    split_seed: Mapped[int] = mapped_column(Integer, default=0)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    log: Mapped[str] = mapped_column(Text, default="")
    artifact_path: Mapped[str | None] = mapped_column(String(500), default=None)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ModelVersion(IdMixin, Base):
    """A trained router: its artifact, the data it saw and its held-out metrics."""

    __tablename__ = "model_version"

    version: Mapped[int] = mapped_column(Integer, unique=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("training_run.id"))
    artifact_path: Mapped[str] = mapped_column(String(500))
    outcomes_seen: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    promoted: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelArtifact(Base):
    """A model version's artifact (the skops file's bytes) and its SHA-256, so that every API
    process on any machine can load the router the champion names, not only the trainer that
    wrote the file; a process without the local file fetches it and checks the hash."""

    __tablename__ = "model_artifact"

    version: Mapped[int] = mapped_column(ForeignKey("model_version.version"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAlias(Base):
    """A movable name (``champion``) pointing at one model version; promotion moves it."""

    __tablename__ = "model_alias"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(ForeignKey("model_version.version"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ModelAliasEvent(IdMixin, Base):
    """History of alias moves (promotions and rollbacks), newest last."""

    __tablename__ = "model_alias_event"

    alias: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    previous_version: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(500), default="")
    # the email of the admin who moved it; None for the trainer's automatic promotion
    actor: Mapped[str | None] = mapped_column(String(320), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
