"""The operator's test call of an ``llm`` agent: one probe through its endpoint, as the runner
would send it (the egress policy, the timeout, the stored API key), with no task and no money."""

from __future__ import annotations

import time
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User
from dukenet.agents import service
from dukenet.agents.models import Agent, AgentKind
from dukenet.agents.schemas import AgentTestCall, AgentTestCallRead, LLMAgentConfig
from dukenet.config import Settings
from dukenet.errors import BadRequest, Forbidden
from dukenet.kit import netguard
from dukenet.kit.secrets import SecretBox
from dukenet.runners.base import ExecutionError, WorkItem
from dukenet.runners.llm import LLMExecutor

MAX_TEXT_CHARS = 2000
"""A test call's answer is cut to this many characters."""


async def get_testable(session: AsyncSession, *, actor: User, agent_id: uuid.UUID) -> Agent:
    """Return the caller's own ``llm`` agent for a test call (an admin tests only the agents it
    registered: the call spends the operator's tokens at the provider).

    Raises:
        NotFound: no such agent. Forbidden: not the caller's agent.
        BadRequest: not an ``llm`` agent (replay and human agents have no endpoint).
    """
    agent = await service.get(session, agent_id)
    if agent.owner_id != actor.id:
        raise Forbidden("only the agent's operator may test-call it")
    if agent.kind is not AgentKind.LLM:
        raise BadRequest(
            f"test calls are for llm agents; {agent.name} is a {agent.kind.value} agent"
        )
    return agent


async def test_call(
    agent: Agent, data: AgentTestCall, *, settings: Settings, secrets: SecretBox
) -> AgentTestCallRead:
    """Send ``data.prompt`` through ``agent``'s endpoint once (no retries) and report the answer,
    its latency (ms) or the error; nothing is written (no task, no outcome, no ledger entry).

    The request goes out as the runner's does: through ``kit.netguard``'s guarded client (the
    server's egress policy, checked at connect time), with ``llm_timeout_s`` and the agent's own
    system prompt, model and API key; ``max_tokens`` is the probe's (at most the agent's).
    """
    config = LLMAgentConfig.model_validate(agent.config)
    probe = Agent(
        id=agent.id,
        name=agent.name,
        kind=AgentKind.LLM,
        owner_id=agent.owner_id,
        config={**agent.config, "max_tokens": min(data.max_tokens, config.max_tokens)},
    )
    policy = netguard.EgressPolicy.from_settings(settings)
    started = time.perf_counter()
    async with netguard.guarded_client(policy, timeout=settings.llm_timeout_s) as http:
        executor = LLMExecutor(http, secrets=secrets, max_retries=0)
        try:
            execution = await executor.execute(
                probe, WorkItem(description=data.prompt, complexity=1)
            )
        except ExecutionError as exc:
            return AgentTestCallRead(
                ok=False,
                latency_ms=round((time.perf_counter() - started) * 1000, 2),
                text=None,
                error=str(exc)[:MAX_TEXT_CHARS],
                model=config.model,
                usage={},
            )
    usage = execution.metadata.get("usage") or {}
    return AgentTestCallRead(
        ok=execution.success,
        latency_ms=round(execution.latency_ms or 0.0, 2),
        text=execution.text[:MAX_TEXT_CHARS],
        error=None if execution.success else "the endpoint answered with an empty message",
        model=execution.metadata.get("model") or config.model,
        usage={k: v for k, v in usage.items() if v is None or isinstance(v, int)},
    )
