"""Imports every ORM model so the metadata is complete (Alembic, tests)."""

from __future__ import annotations

from dukenet.accounts.models import ApiKey, RefreshToken, User
from dukenet.agents.models import Agent
from dukenet.comparisons.models import Comparison
from dukenet.curation.models import CurationDecision
from dukenet.feedback.models import Evaluation, Feedback, OutcomeLabel
from dukenet.files.models import File, TaskFile
from dukenet.gateway.models import ApiKeyLimit, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from dukenet.kit.orm import Base
from dukenet.learning.models import (
    ModelAlias,
    ModelAliasEvent,
    ModelArtifact,
    ModelVersion,
    Outcome,
    TrainingRun,
)
from dukenet.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from dukenet.payments.models import Deposit, Payout
from dukenet.tasks.models import Task, TaskResult
from dukenet.tasks.quotes import TaskQuote

metadata = Base.metadata

__all__ = [
    "Agent",
    "ApiKey",
    "ApiKeyLimit",
    "Comparison",
    "CurationDecision",
    "Deposit",
    "Evaluation",
    "Feedback",
    "File",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "ModelAlias",
    "ModelAliasEvent",
    "ModelArtifact",
    "ModelVersion",
    "Outcome",
    "OutcomeLabel",
    "Payout",
    "RefreshToken",
    "Task",
    "TaskFile",
    "TaskQuote",
    "TaskResult",
    "TrainingRun",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "metadata",
]
