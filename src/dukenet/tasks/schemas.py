"""API schemas of tasks, routing receipts, claims and results."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from dukenet.agents.models import AgentKind
from dukenet.feedback.evaluators import EvaluatorSpec
from dukenet.kit.schema import Schema
from dukenet.ledger.schemas import TransactionRead
from dukenet.tasks.models import TaskStatus


class TaskQuoteRequest(Schema):
    """What a buyer asks the market for; a quote creates nothing.

    ``cost_weight`` is the quality/cost preference: the success probability the buyer would give
    up to save one reference price (100,000 sat × complexity); 0 buys the best predicted quality
    regardless of price. ``agent_id`` pins an agent; ``exclude_agent_ids`` rules agents out.
    """

    description: str = Field(min_length=1, max_length=100_000)
    complexity: int = Field(ge=1, le=10)
    max_price_sat: int | None = Field(default=None, gt=0, le=10**15)
    cost_weight: float | None = Field(default=None, ge=0.0, le=100.0)
    agent_id: uuid.UUID | None = None
    exclude_agent_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)

    @field_validator("description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("description must not be blank")
        return value


class ChatMessage(Schema):
    """One turn of a conversation, as in OpenAI's chat-completions API."""

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=1_000_000)


class ChatParams(Schema):
    """Sampling parameters passed to an ``llm`` agent (unset: the agent's own configuration);
    ``max_tokens`` counts completion tokens, ``stop`` holds at most 4 sequences."""

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stop: list[str] | None = Field(default=None, max_length=4)
    user: str | None = Field(default=None, max_length=256)


class ChatPayload(Schema):
    """A conversation for an ``llm`` agent: it is sent as given (after the agent's own system
    prompt) instead of the description alone; other agents answer the description."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=1_000)
    params: ChatParams = Field(default_factory=ChatParams)
    # the buyer accepts the result in advance: the agent is paid on delivery (no dispute window)
    accept_on_delivery: bool = False
    # the buyer's call streams (the gateway's stream: true): an llm agent is asked to stream and
    # its answer is relayed as it comes; the stored result is the whole answer either way
    stream: bool = False


class TaskCreate(TaskQuoteRequest):
    """A buyer's task: the quote request plus attached files and an ``idempotency_key`` that
    makes a retried submission return the first task instead of paying twice; ``chat`` carries
    a conversation and sampling parameters for ``llm`` agents (the gateway fills it);
    ``external_id`` is the buyer's own reference for the task (e.g. a replayed dataset's task id),
    shown with the task and handed to the runner that executes it."""

    file_ids: list[uuid.UUID] = Field(default_factory=list, max_length=20)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    chat: ChatPayload | None = None
    # a binding quote (POST /tasks/quote): its agent, at no more than its price, or 409
    quote_id: uuid.UUID | None = None
    # how the result is checked (feedback.evaluators): a reference answer or an LLM judge
    evaluator: EvaluatorSpec | None = None
    # private: the task, its result and its labels never leave the database (no dataset, no
    # export); it is still routed, paid and counted in reputation like any other
    private: bool = False
    # a second agent answers the same task and the buyer picks one (comparisons/); the payment
    # mode (``both`` agents or the ``winner`` only) defaults to DUKENET_COMPARISON_PAYMENT
    compare: bool = False
    compare_payment: Literal["both", "winner"] | None = None


class QuoteRead(Schema):
    """The agent Duke would choose now, its price (sat), predicted success, and the alternatives
    ranked by expected utility (``utility_sat`` is null when cost_weight is 0)."""

    agent_id: uuid.UUID
    agent_name: str
    price_sat: int
    p_success: float
    model_version: int | None
    eligible_agents: int
    alternatives: list[dict[str, Any]]
    # buy it with POST /tasks {"quote_id": ...} before expires_at: this agent at most this price
    quote_id: uuid.UUID | None = None
    expires_at: datetime | None = None


class ResultRead(Schema):
    """An agent's result for a task."""

    id: uuid.UUID
    agent_id: uuid.UUID
    attempt: int
    text: str
    success: bool
    confidence: float | None
    latency_ms: float | None
    cost_usd: float | None
    created_at: datetime


class TaskRead(Schema):
    """A task as its buyer sees it. ``escrow_sat`` is what the buyer paid into escrow and
    ``price_sat`` what the running agent asks (lower after a failover; the rest is refunded on
    settlement). A ``delivered`` task waits for acceptance until ``accept_by``."""

    id: uuid.UUID
    description: str
    complexity: int
    private: bool = False
    external_id: str | None = None
    max_price_sat: int | None
    cost_weight: float
    status: TaskStatus
    agent_id: uuid.UUID | None
    price_sat: int
    escrow_sat: int
    model_version: int | None
    propensity: float | None
    attempts: int
    error: str | None
    created_at: datetime
    delivered_at: datetime | None
    accept_by: datetime | None
    rejection_reason: str | None
    finished_at: datetime | None


class TaskDetail(TaskRead):
    """A task with its routing receipt, result and ledger transactions."""

    routing: dict[str, Any]
    chat: ChatPayload | None = None
    file_ids: list[uuid.UUID]
    result: ResultRead | None
    transactions: list[TransactionRead]


class ClaimRequest(Schema):
    """A runner asks for work for one of its agents (or any of them); ``task_id`` claims one
    task from the inbox instead of the oldest."""

    agent_id: uuid.UUID | None = None
    task_id: uuid.UUID | None = None
    runner: str = Field(default="runner", min_length=1, max_length=200)
    # what the runner can execute: only tasks of these agents / of agents of these kinds are
    # handed out (unset: no restriction), so a runner never claims work it would have to fail
    agent_ids: list[uuid.UUID] | None = Field(default=None, max_length=10_000)
    kinds: list[AgentKind] | None = Field(default=None, max_length=10)


class ClaimRead(Schema):
    """A claimed task and the lease the runner holds on it."""

    task_id: uuid.UUID
    agent_id: uuid.UUID
    lease_token: uuid.UUID
    lease_expires_at: datetime
    attempt: int
    description: str
    complexity: int
    external_id: str | None = None  # the buyer's reference for the task (TaskCreate)
    file_ids: list[uuid.UUID]
    context: str = ""  # excerpts of the task's files within the server's budget ("" if none)
    chat: ChatPayload | None = None  # the conversation and parameters of a chat request


class StreamPiece(Schema):
    """A piece of the answer of a task a runner holds, relayed while its agent streams it:
    ``offset`` is where it starts, in characters, within this attempt's answer."""

    lease_token: uuid.UUID
    offset: int = Field(ge=0, le=10_000_000)
    text: str = Field(min_length=1, max_length=65_536)


class StreamAck(Schema):
    """Whether the server holds the piece now (False: a gap before it, or the relay's buffer
    for the task is full; the submitted result is the answer either way)."""

    accepted: bool


class ResultSubmit(Schema):
    """A runner's result; ``idempotency_key`` makes retries of the same submission safe."""

    lease_token: uuid.UUID
    idempotency_key: str = Field(min_length=1, max_length=200)
    text: str = Field(max_length=1_000_000)
    success: bool
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    latency_ms: float | None = Field(default=None, ge=0.0)
    cost_usd: float | None = Field(default=None, ge=0.0)
    metadata: dict[str, Any] = Field(default_factory=dict)


class RejectRequest(Schema):
    """Why the buyer rejects a delivered result (kept with the task)."""

    reason: str = Field(min_length=1, max_length=2_000)


class InboxItem(Schema):
    """A task waiting for (``assigned``) or held by (``executing``) one of the caller's agents."""

    id: uuid.UUID
    agent_id: uuid.UUID | None
    status: TaskStatus
    description: str
    complexity: int
    price_sat: int
    attempts: int
    max_attempts: int
    lease_expires_at: datetime | None
    created_at: datetime
