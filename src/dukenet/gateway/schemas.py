"""Schemas of the gateway: the OpenAI chat-completions request as DukeNET accepts it, buyer API
keys with spend limits, usage reports and webhooks."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dukenet.kit.schema import Schema

DUKE_MODEL = "duke"
"""The ``model`` that lets Duke route; any other name pins the agent of that name."""

WebhookEvent = Literal[
    "task.assigned",
    "task.delivered",
    "task.completed",
    "task.rejected",
    "task.failed",
    "task.refunded",
]
WEBHOOK_EVENTS: tuple[str, ...] = get_args(WebhookEvent)


class DukenetOptions(Schema):
    """The ``dukenet`` extension of a chat request (``extra_body={"dukenet": {...}}`` with the
    ``openai`` client): the buyer's cost/quality knob, a price cap in satoshis, the task's
    complexity (1..10; derived from the text when unset), whether the gateway accepts the result
    for the buyer, how long to wait (seconds, at most the server's limit) and an idempotency
    key that makes a retried call return the first task."""

    cost_weight: float | None = Field(default=None, ge=0.0, le=100.0)
    max_price_sat: int | None = Field(default=None, gt=0, le=10**15)
    complexity: int | None = Field(default=None, ge=1, le=10)
    accept: bool | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class ContentPart(BaseModel):
    """A part of a message's content; only ``text`` parts are supported."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class InputMessage(BaseModel):
    """A message of the request (``developer`` counts as ``system``)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = Field(default=None, max_length=64)

    def text(self) -> str:
        """Return the content as one string."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a final chunk with the token usage."""

    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """A ``POST /v1/chat/completions`` body. Parameters not listed here are refused with a 400
    naming them (rather than silently dropped); ``n`` must be 1."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    messages: list[InputMessage] = Field(min_length=1, max_length=1_000)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stop: str | list[str] | None = None
    user: str | None = Field(default=None, max_length=256)
    n: Literal[1] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    dukenet: DukenetOptions = Field(default_factory=DukenetOptions)

    @field_validator("stop")
    @classmethod
    def _at_most_four(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, value: list[InputMessage]) -> list[InputMessage]:
        if not any(m.role == "user" for m in value):
            raise ValueError("at least one user message is required")
        return value


# buyer API keys and usage


class BuyerKeyCreate(Schema):
    """A new buyer API key: a name and optional spend limits (satoshis per UTC day, in total)."""

    name: str = Field(min_length=1, max_length=120)
    daily_limit_sat: int | None = Field(default=None, ge=0, le=10**15)
    total_limit_sat: int | None = Field(default=None, ge=0, le=10**15)


class BuyerKeyUpdate(Schema):
    """New spend limits of a key (null: unlimited); both are replaced."""

    daily_limit_sat: int | None = Field(default=None, ge=0, le=10**15)
    total_limit_sat: int | None = Field(default=None, ge=0, le=10**15)


class KeyUsage(Schema):
    """What a key spent: calls, satoshis held or paid (refunds excluded) and tokens, in total
    and today (UTC)."""

    calls: int
    spent_sat: int
    spent_today_sat: int
    prompt_tokens: int
    completion_tokens: int


class BuyerKeyRead(Schema):
    """A buyer API key without its secret, with its limits and usage."""

    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    daily_limit_sat: int | None
    total_limit_sat: int | None
    usage: KeyUsage


class BuyerKeyCreated(BuyerKeyRead):
    """A new key with its secret ``key`` (``dk_...``), shown this once only."""

    key: str


class UsageRow(Schema):
    """One group of a usage report: calls, satoshis spent, tokens (None: not grouped by it)."""

    day: date | None = None
    agent_id: uuid.UUID | None = None
    agent_name: str | None = None
    api_key_id: uuid.UUID | None = None
    calls: int
    spent_sat: int
    prompt_tokens: int
    completion_tokens: int


class UsageReport(Schema):
    """A buyer's usage grouped as asked, and the totals."""

    group_by: list[str]
    rows: list[UsageRow]
    total: UsageRow


# webhooks


class WebhookCreate(Schema):
    """A webhook endpoint: an HTTPS URL (checked like ``llm`` agent URLs), the events to send
    (all when empty) and a description."""

    url: str = Field(min_length=1, max_length=2000)
    events: list[WebhookEvent] = Field(default_factory=list, max_length=len(WEBHOOK_EVENTS))
    description: str = Field(default="", max_length=200)


class WebhookRead(Schema):
    """A webhook endpoint without its secret."""

    id: uuid.UUID
    url: str
    events: list[str]
    description: str
    is_active: bool
    created_at: datetime


class WebhookCreated(WebhookRead):
    """A new endpoint with its signing ``secret`` (``whsec_...``), shown this once only."""

    secret: str


class WebhookAttemptRead(Schema):
    """One try at a delivery."""

    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float
    created_at: datetime


class WebhookDeliveryRead(Schema):
    """One event sent (or being sent) to an endpoint, with its attempts."""

    id: uuid.UUID
    event: str
    task_id: uuid.UUID | None
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    payload: dict[str, Any]
    attempt_log: list[WebhookAttemptRead] = Field(default_factory=list)
