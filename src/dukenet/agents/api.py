"""Agents endpoints: register, list, show, enable/disable."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from dukenet.accounts.models import UserRole
from dukenet.agents import probe, service
from dukenet.agents.deps import Secrets
from dukenet.agents.schemas import (
    AgentCreate,
    AgentDetail,
    AgentRead,
    AgentSeriesRead,
    AgentStatsRead,
    AgentTestCall,
    AgentTestCallRead,
    AgentUpdate,
)
from dukenet.deps import CurrentUser, OperatorUser, Session, State
from dukenet.kit.openapi import error_responses
from dukenet.ledger.schemas import MoneyBucket
from dukenet.tasks import service as tasks_service

REDACTED = "**********"


def redact_secrets(value: Any) -> Any:
    """Return ``value`` with every ``api_key`` in it (at any depth) replaced by asterisks."""
    if isinstance(value, dict):
        return {
            k: REDACTED if k == "api_key" and v is not None else redact_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    return value


class RedactingRoute(APIRoute):
    """A route whose 422 answers never echo an ``api_key`` the client sent (validation errors
    carry the offending input: the field's value, or the whole object for a missing field)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Return FastAPI's handler wrapped to redact the inputs of validation errors."""
        handler = super().get_route_handler()

        async def redacting_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = []
                for error in exc.errors():
                    error = dict(error)
                    if error.get("loc") and error["loc"][-1] == "api_key":
                        error["input"] = REDACTED
                    errors.append(redact_secrets(error))
                raise RequestValidationError(errors) from None

        return redacting_handler


router = APIRouter(tags=["agents"], route_class=RedactingRoute)


@router.post(
    "/agents",
    status_code=status.HTTP_201_CREATED,
    response_model=AgentDetail,
    responses=error_responses(400),
)
async def register(
    data: AgentCreate, user: OperatorUser, session: Session, state: State, secrets: Secrets
) -> AgentDetail:
    """Register an agent (operators: ``llm``; admins also ``replay``).

    An ``llm`` agent's ``api_key`` is stored encrypted and shown only as ``has_api_key`` and
    ``api_key_last4``.
    """
    agent = await service.register(
        session, settings=state.settings, owner=user, data=data, secrets=secrets
    )
    await session.commit()
    return AgentDetail.model_validate(agent)


@router.get("/agents", response_model=list[AgentRead])
async def list_agents(user: CurrentUser, session: Session) -> list[AgentRead]:
    """List the market's enabled agents (admins see disabled ones too)."""
    agents = await service.list_agents(session, enabled_only=user.role is not UserRole.ADMIN)
    return [AgentRead.model_validate(a) for a in agents]


@router.get("/agents/leaderboard", response_model=list[AgentStatsRead])
async def leaderboard(
    user: CurrentUser,
    session: Session,
    state: State,
    min_tasks: int = Query(default=1, ge=0, le=10_000),
) -> list[AgentStatsRead]:
    """Rank the market's agents by their smoothed success rate, with tasks, earnings, latency."""
    return await service.leaderboard(session, settings=state.settings, min_tasks=min_tasks)


@router.get("/agents/{agent_id}/stats", response_model=AgentStatsRead)
async def agent_stats(
    agent_id: uuid.UUID, user: CurrentUser, session: Session, state: State
) -> AgentStatsRead:
    """Show an agent's finished tasks, success rate, earnings (sat) and p50/p95 latency (ms)."""
    agent = await service.get(session, agent_id)
    return (await service.stats(session, settings=state.settings, agents=[agent]))[0]


@router.get(
    "/agents/{agent_id}/series", response_model=AgentSeriesRead, responses=error_responses(404)
)
async def agent_series(
    agent_id: uuid.UUID,
    user: CurrentUser,
    session: Session,
    state: State,
    bucket: MoneyBucket = MoneyBucket.DAY,
    days: int = Query(default=30, ge=1, le=366, description="The window: the last N days"),
) -> AgentSeriesRead:
    """Show an agent's record by hour, day or week (UTC): finished tasks, successes, success
    rate, buyers' mean rating, and the smoothed success rate and price multiplier reputation
    gives its outcomes up to each bucket's end; its operator and admins only.

    Hour buckets cover at most 31 days; empty buckets are included.
    """
    return await service.series(
        session, settings=state.settings, user=user, agent_id=agent_id, bucket=bucket, days=days
    )


@router.get("/agents/{agent_id}", response_model=AgentDetail | AgentRead)
async def get_agent(
    agent_id: uuid.UUID, user: CurrentUser, session: Session
) -> AgentDetail | AgentRead:
    """Show one agent; its operator and admins also see its configuration."""
    agent = await service.get(session, agent_id)
    if user.role is UserRole.ADMIN or agent.owner_id == user.id:
        return AgentDetail.model_validate(agent)
    return AgentRead.model_validate(agent)


@router.patch("/agents/{agent_id}", response_model=AgentDetail, responses=error_responses(400))
async def update_agent(
    agent_id: uuid.UUID,
    data: AgentUpdate,
    user: OperatorUser,
    session: Session,
    state: State,
    secrets: Secrets,
) -> AgentDetail:
    """Change an agent's description, price or LLM configuration, its API key included
    (``"api_key": null`` removes a stored key); its operator or an admin."""
    agent = await service.update(
        session, settings=state.settings, actor=user, agent_id=agent_id, data=data, secrets=secrets
    )
    await session.commit()
    return AgentDetail.model_validate(agent)


@router.post("/agents/{agent_id}/enable", response_model=AgentRead)
async def enable(agent_id: uuid.UUID, user: OperatorUser, session: Session) -> AgentRead:
    """Put an agent back on the market."""
    agent = await service.set_enabled(session, actor=user, agent_id=agent_id, enabled=True)
    await session.commit()
    return AgentRead.model_validate(agent)


@router.post("/agents/{agent_id}/disable", response_model=AgentRead)
async def disable(
    agent_id: uuid.UUID, user: OperatorUser, session: Session, state: State
) -> AgentRead:
    """Take an agent off the market. Its queued tasks move to the best other agent within each
    buyer's budget, or are refunded (pinned to it, or none qualifies); tasks it is executing
    finish."""
    agent = await service.set_enabled(session, actor=user, agent_id=agent_id, enabled=False)
    await tasks_service.reassign_queued(session, settings=state.settings, agent_id=agent.id)
    await session.commit()
    return AgentRead.model_validate(agent)


@router.post(
    "/agents/{agent_id}/test-call",
    response_model=AgentTestCallRead,
    responses=error_responses(400, 403, 404),
)
async def test_call(
    agent_id: uuid.UUID,
    user: OperatorUser,
    session: Session,
    state: State,
    secrets: Secrets,
    data: AgentTestCall | None = None,
) -> AgentTestCallRead:
    """Send a short probe through the caller's own ``llm`` agent's endpoint and report its
    answer, latency (ms) or error (200 either way); no task is created and no money moves.

    The probe goes out as the runner's calls do (the egress policy, ``llm_timeout_s``, the
    stored API key), without retries; ``max_tokens`` caps the answer (default 32).
    """
    agent = await probe.get_testable(session, actor=user, agent_id=agent_id)
    # End the read transaction before the call: the endpoint may take up to llm_timeout_s.
    await session.commit()
    return await probe.test_call(
        agent, data or AgentTestCall(), settings=state.settings, secrets=secrets
    )
