"""API schemas of the agents domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, Field

from dukenet.agents.models import AgentKind
from dukenet.kit.schema import Schema

AgentName = Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[\w.\-/:@]+$")]


class LLMAgentConfig(Schema):
    """An OpenAI-compatible endpoint: ``base_url`` up to ``/v1``, the model name, and the name of
    the environment variable holding its API key (the key itself is never stored)."""

    base_url: AnyHttpUrl
    model: str = Field(min_length=1, max_length=200)
    api_key_env: str | None = Field(default=None, max_length=100, pattern=r"^[A-Z_][A-Z0-9_]*$")
    system_prompt: str = Field(default="", max_length=10_000)
    max_tokens: int = Field(default=1024, ge=1, le=100_000)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)


class ReplayAgentConfig(Schema):
    """A recorded-outcomes agent: which dataset and which of its models it replays."""

    dataset: Literal["routerbench"] = "routerbench"
    model: str = Field(min_length=1, max_length=200)


class AgentCreate(Schema):
    """Register an agent. ``base_price_sat`` defaults to the market's 100,000 sat."""

    name: AgentName
    kind: Literal["llm", "replay"]
    description: str = Field(default="", max_length=2000)
    base_price_sat: int | None = Field(default=None, gt=0, le=10**12)
    llm: LLMAgentConfig | None = None
    replay: ReplayAgentConfig | None = None


class AgentRead(Schema):
    """An agent as listed on the market."""

    id: uuid.UUID
    name: str
    kind: AgentKind
    description: str
    base_price_sat: int
    is_enabled: bool
    finished_tasks: int
    success_rate: float
    reputation_multiplier: float
    created_at: datetime


class AgentDetail(AgentRead):
    """An agent with its configuration, shown to its operator and admins."""

    owner_id: uuid.UUID
    config: dict[str, Any]


class AgentStatsRead(Schema):
    """An agent's record: finished tasks, success rate, earnings (sat), latency (ms)."""

    agent_id: uuid.UUID
    name: str
    tasks: int
    successes: int
    success_rate: float | None
    reputation_multiplier: float
    earnings_sat: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
