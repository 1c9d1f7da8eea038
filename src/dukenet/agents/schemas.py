"""API schemas of the agents domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, ConfigDict, Field, SecretStr, field_validator, model_validator

from dukenet.agents.models import AgentKind
from dukenet.kit.schema import Schema
from dukenet.ledger.schemas import MoneyBucket

AgentName = Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[\w.\-/:@]+$")]


LLM_SECRET_FIELDS = frozenset({"api_key_encrypted"})
"""Keys of a stored ``llm`` configuration that no API response shows."""

ApiKeyEnv = Annotated[str, Field(max_length=100, pattern=r"^[A-Z_][A-Z0-9_]*$")]


def _check_api_key(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        raw = value.get_secret_value()
        if not 1 <= len(raw) <= 1000 or not all("!" <= c <= "~" for c in raw):
            raise ValueError("api_key must be 1-1000 printable ASCII characters without spaces")
    return value


class LLMAgentFields(Schema):
    """An OpenAI-compatible endpoint: ``base_url`` up to ``/v1``, the model name, the prompt
    settings and, optionally, the name of an environment variable holding its API key."""

    base_url: AnyHttpUrl
    model: str = Field(min_length=1, max_length=200)
    api_key_env: ApiKeyEnv | None = None
    system_prompt: str = Field(default="", max_length=10_000)
    max_tokens: int = Field(default=1024, ge=1, le=100_000)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)


class LLMAgentCreate(LLMAgentFields):
    """An ``llm`` agent's configuration as registered: the API key is either given (``api_key``,
    stored encrypted, never shown again) or named (``api_key_env``, read by the runner), or
    neither for an endpoint without authentication."""

    api_key: SecretStr | None = None

    _api_key_ok = field_validator("api_key")(_check_api_key)

    @model_validator(mode="after")
    def _one_key_source(self) -> LLMAgentCreate:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key or api_key_env, not both")
        return self


class LLMAgentConfig(LLMAgentFields):
    """An ``llm`` agent's configuration as stored in ``Agent.config`` and read by executors.

    ``api_key_encrypted`` is the Fernet token of the key (``kit.secrets``); ``has_api_key`` and
    ``api_key_last4`` are what the API shows of it. Unknown keys are ignored so that a runner
    reading the redacted configuration over the API can parse it.
    """

    model_config = ConfigDict(from_attributes=True, extra="ignore")

    api_key_encrypted: str | None = None
    has_api_key: bool = False
    api_key_last4: str | None = None


class LLMAgentUpdate(Schema):
    """Change an ``llm`` agent's configuration; omitted fields stay as they are.

    ``api_key``: a new key (stored encrypted; it replaces ``api_key_env``), or ``null`` to
    remove the stored key. ``api_key_env``: a variable name (it replaces a stored key), or
    ``null`` to stop using one.
    """

    base_url: AnyHttpUrl | None = None
    model: str | None = Field(default=None, min_length=1, max_length=200)
    api_key: SecretStr | None = None
    api_key_env: ApiKeyEnv | None = None
    system_prompt: str | None = Field(default=None, max_length=10_000)
    max_tokens: int | None = Field(default=None, ge=1, le=100_000)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)

    _api_key_ok = field_validator("api_key")(_check_api_key)

    @model_validator(mode="after")
    def _one_key_source(self) -> LLMAgentUpdate:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key or api_key_env, not both")
        for name in ("base_url", "model", "system_prompt", "max_tokens", "temperature"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class ReplayAgentConfig(Schema):
    """A recorded-outcomes agent: which dataset and which of its models it replays."""

    # the name a runner's replay executor holds the dataset under (``dukenet replay --name``)
    dataset: str = Field(
        default="routerbench", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$"
    )
    model: str = Field(min_length=1, max_length=200)


class AgentCreate(Schema):
    """Register an agent. ``base_price_sat`` defaults to the market's 100,000 sat. A ``human``
    agent needs no configuration: its operator answers its tasks through the runner protocol
    (inbox, claim, result)."""

    name: AgentName
    kind: Literal["llm", "replay", "human"]
    description: str = Field(default="", max_length=2000)
    base_price_sat: int | None = Field(default=None, gt=0, le=10**12)
    llm: LLMAgentCreate | None = None
    replay: ReplayAgentConfig | None = None


class AgentUpdate(Schema):
    """Change an agent's description, base price or (``llm`` agents) configuration."""

    description: str | None = Field(default=None, max_length=2000)
    base_price_sat: int | None = Field(default=None, gt=0, le=10**12)
    llm: LLMAgentUpdate | None = None


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
    """An agent with its configuration, shown to its operator and admins; an ``llm`` agent's
    stored API key appears only as ``has_api_key`` and ``api_key_last4``."""

    owner_id: uuid.UUID
    config: dict[str, Any]

    @field_validator("config", mode="after")
    @classmethod
    def _redact(cls, value: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in value.items() if k not in LLM_SECRET_FIELDS}


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


class AgentSeriesPoint(Schema):
    """One bucket of an agent's record, by when its tasks finished (their outcomes).

    ``outcomes``: tasks finished in the bucket; ``successes``: those whose current label
    (``feedback.labels``: the strongest source's quality) reaches the success threshold;
    ``success_rate``: successes / outcomes, null without outcomes; ``ratings`` and
    ``mean_rating``: the buyers' 1-5 star ratings of those tasks (null without any).
    ``smoothed_success_rate`` and ``reputation_multiplier``: the pricing formula
    (``market.reputation``) applied to the agent's last ``reputation_window`` outcomes finished
    before the bucket's end, as they are labelled now and with today's settings; null for a
    bucket that ended before the agent was registered.
    """

    start: datetime
    outcomes: int = 0
    successes: int = 0
    success_rate: float | None = None
    ratings: int = 0
    mean_rating: float | None = None
    smoothed_success_rate: float | None = None
    reputation_multiplier: float | None = None


class AgentSeriesRead(Schema):
    """An agent's record over time: ``points`` cover [``since``, ``until``) in consecutive
    buckets of ``bucket_s`` seconds, empty buckets included, oldest first.

    The reputation figures are recomputed from today's labels: a later relabel (a buyer's
    rejection, a curator) moves past points too, so they show what the formula makes of the
    record now, not a log of the multiplier the agent was priced at then.
    """

    agent_id: uuid.UUID
    bucket: MoneyBucket
    bucket_s: int
    since: datetime
    until: datetime
    points: list[AgentSeriesPoint]


class AgentTestCall(Schema):
    """A probe sent through an ``llm`` agent's endpoint: a short prompt, a small answer."""

    prompt: str = Field(default="Reply with the single word OK.", min_length=1, max_length=2000)
    max_tokens: int = Field(default=32, ge=1, le=256)


class AgentTestCallRead(Schema):
    """What the endpoint answered a test call: ``ok`` with the answer's ``text`` (at most
    2,000 characters), or the ``error``; ``latency_ms`` from sending to the full answer."""

    ok: bool
    latency_ms: float
    text: str | None
    error: str | None
    model: str | None
    usage: dict[str, int | None]
