"""The OpenAI-compatible chat gateway: a chat request becomes an ordinary DukeNET task (routed,
priced, escrowed, run by a runner, settled, an outcome with its propensity); the call waits for
it and answers in OpenAI's ``chat.completion`` shape with a ``dukenet`` extension."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.accounts.models import User
from dukenet.agents import service as agents_service
from dukenet.agents.models import Agent
from dukenet.config import Settings
from dukenet.errors import DukenetError
from dukenet.gateway.errors import GatewayError
from dukenet.gateway.schemas import DUKE_MODEL, ChatCompletionRequest
from dukenet.kit.bell import TaskBell
from dukenet.learning.routerbench import complexity_of
from dukenet.learning.serving import ChampionCache
from dukenet.tasks import service as tasks_service
from dukenet.tasks.models import FINAL_STATUSES, Task, TaskStatus
from dukenet.tasks.schemas import ChatMessage, ChatParams, ChatPayload, TaskCreate

COST_WEIGHT_HEADER = "x-dukenet-cost-weight"
MAX_PRICE_HEADER = "x-dukenet-max-price-sat"
RECEIPT_PATH = "/api/v2/tasks/{task_id}"
HEADER_FIELDS = ((COST_WEIGHT_HEADER, "cost_weight"), (MAX_PRICE_HEADER, "max_price_sat"))


def parse_request(body: Any, headers: Mapping[str, str]) -> ChatCompletionRequest:
    """Validate a chat-completions body; ``X-DukeNET-Cost-Weight`` and
    ``X-DukeNET-Max-Price-Sat`` headers fill the ``dukenet`` extension's fields left unset.

    Raises:
        GatewayError: 400 naming the first unsupported or invalid parameter.
    """
    if not isinstance(body, dict):
        raise GatewayError("the request body must be a JSON object")
    extension = body.get("dukenet")
    options = dict(extension) if isinstance(extension, dict) else {}
    for header, field in HEADER_FIELDS:
        if header in headers and options.get(field) is None:
            options[field] = headers[header]
    if options or extension is not None:
        body = {**body, "dukenet": options if isinstance(extension, dict | None) else extension}
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise GatewayError.from_validation(exc) from None


def _task_create(
    settings: Settings, request: ChatCompletionRequest, agent: Agent | None
) -> TaskCreate:
    messages = [
        ChatMessage(role="system" if m.role == "developer" else m.role, content=m.text())
        for m in request.messages
    ]
    last_user = next(m.content for m in reversed(messages) if m.role == "user")
    if not last_user.strip():
        raise GatewayError("the last user message is empty", param="messages", code="invalid_value")
    options = request.dukenet
    complexity = options.complexity or settings.gateway_complexity or complexity_of(last_user)
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    return TaskCreate(
        description=last_user,
        complexity=complexity,
        max_price_sat=options.max_price_sat,
        cost_weight=options.cost_weight,
        agent_id=agent.id if agent is not None else None,
        idempotency_key=options.idempotency_key,
        chat=ChatPayload(
            messages=messages,
            params=ChatParams(
                temperature=request.temperature,
                max_tokens=request.max_completion_tokens or request.max_tokens,
                stop=stop,
                user=request.user,
            ),
            accept_on_delivery=(
                settings.gateway_auto_accept if options.accept is None else options.accept
            ),
            stream=request.stream,
        ),
    )


async def _resolve_model(session: AsyncSession, model: str) -> Agent | None:
    """Return the agent a model name pins (None for ``duke``).

    Raises:
        GatewayError: 404 ``model_not_found`` when no enabled agent has that name.
    """
    if model == DUKE_MODEL:
        return None
    for agent in await agents_service.list_agents(session, enabled_only=True):
        if agent.name == model:
            return agent
    raise GatewayError(
        f"The model '{model}' does not exist: use 'duke' or an enabled agent's name "
        "(GET /v1/models)",
        404,
        param="model",
        code="model_not_found",
    )


async def submit(
    session: AsyncSession,
    *,
    settings: Settings,
    champion: ChampionCache,
    user: User,
    api_key_id: uuid.UUID | None,
    request: ChatCompletionRequest,
) -> tuple[Task, bool]:
    """Create the task of a chat request (``tasks.service.create``: routed by Duke or pinned
    by ``model``, priced, escrowed, counted against the API key's limits); return (task,
    created). The caller commits.

    Raises:
        GatewayError: the model is unknown, the request is invalid, or the market refused the
            task (402 balance or spend limit, 400 no agent within the price cap, 403 role).
    """
    agent = await _resolve_model(session, request.model)
    try:
        data = _task_create(settings, request, agent)
    except ValidationError as exc:
        raise GatewayError.from_validation(exc) from None
    try:
        return await tasks_service.create(
            session,
            settings=settings,
            champion=champion,
            buyer=user,
            data=data,
            api_key_id=api_key_id,
        )
    except DukenetError as exc:
        raise GatewayError.from_domain(exc) from exc


def _waiting(task: Task) -> bool:
    return task.status not in FINAL_STATUSES and task.status is not TaskStatus.DELIVERED


async def wait(
    sessionmaker: async_sessionmaker[AsyncSession],
    bell: TaskBell,
    *,
    user: User,
    task_id: uuid.UUID,
    timeout_s: float,
    poll_s: float,
) -> Task:
    """Wait until the task is delivered or final, re-reading it when the bell rings for it (in
    this process, or in another one through the bell's fan-out, events/bell.py) and at least
    every ``poll_s`` seconds (a ring lost, or no fan-out between the processes).

    Raises:
        GatewayError: 504 after ``timeout_s`` seconds, with the task id (the task goes on and
            settles as usual; fetch it from the receipt link).
    """
    deadline = time.monotonic() + timeout_s
    with bell.watch(task_id) as changed:
        while True:
            async with sessionmaker() as session:
                task = await tasks_service.get_visible(session, user=user, task_id=task_id)
                await session.commit()
            if not _waiting(task):
                return task
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GatewayError(
                    f"task {task_id} is still {task.status.value} after {timeout_s:g} s; it "
                    f"goes on and settles as usual: GET {RECEIPT_PATH.format(task_id=task_id)}",
                    504,
                    code="task_timeout",
                    dukenet=_reference(task),
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, poll_s))
            changed.clear()


def _reference(task: Task) -> dict[str, Any]:
    return {
        "task_id": str(task.id),
        "status": task.status.value,
        "receipt_url": RECEIPT_PATH.format(task_id=task.id),
    }


async def finish(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    user: User,
    task: Task,
    accept: bool | None,
) -> dict[str, Any]:
    """Return the ``chat.completion`` body of a delivered or completed task; a task still
    ``delivered`` is accepted here when ``accept`` (else ``gateway_auto_accept``) says so
    (usually the runner already settled it: the request carries ``accept_on_delivery``).

    Raises:
        GatewayError: 502 when the task failed (refunded) or was cancelled, with its id.
    """
    async with sessionmaker() as session:
        if task.status is TaskStatus.DELIVERED and (
            settings.gateway_auto_accept if accept is None else accept
        ):
            task, _ = await tasks_service.accept(
                session, settings=settings, user=user, task_id=task.id
            )
            await session.commit()
        if task.status not in (TaskStatus.DELIVERED, TaskStatus.COMPLETED):
            raise GatewayError(
                f"task {task.id} {task.status.value}: {task.error or 'no answer'}; the escrow "
                "was refunded",
                502,
                code=f"task_{task.status.value}",
                dukenet=_reference(task),
            )
        result = await tasks_service.get_result(session, task.id)
        assert result is not None and task.agent_id is not None
        agent = await agents_service.get(session, task.agent_id)
        await session.commit()
    meta = result.meta or {}
    usage = meta.get("usage") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return {
        "id": f"chatcmpl-{task.id.hex}",
        "object": "chat.completion",
        "created": int(task.created_at.timestamp()),
        "model": agent.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": meta.get("finish_reason") or "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": int(usage.get("total_tokens") or prompt + completion),
        },
        "dukenet": {
            **_reference(task),
            "agent_id": str(agent.id),
            "agent": agent.name,
            "price_sat": task.price_sat,
            "p_success": _p_success(task),
            "propensity": task.propensity,
            "model_version": task.model_version,
        },
    }


def _p_success(task: Task) -> float | None:
    for candidate in task.routing.get("candidates", []):
        if candidate.get("agent_id") == str(task.agent_id):
            value = candidate.get("p_success")
            return float(value) if value is not None else None
    return None


async def list_models(session: AsyncSession) -> dict[str, Any]:
    """Return ``duke`` and every enabled agent as OpenAI model objects."""
    agents: Sequence[Agent] = await agents_service.list_agents(session, enabled_only=True)
    data = [{"id": DUKE_MODEL, "object": "model", "created": 0, "owned_by": "dukenet"}]
    data.extend(
        {
            "id": agent.name,
            "object": "model",
            "created": int(agent.created_at.timestamp()),
            "owned_by": str(agent.owner_id),
        }
        for agent in agents
    )
    return {"object": "list", "data": data}
