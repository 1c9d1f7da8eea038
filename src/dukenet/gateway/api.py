"""Gateway endpoints: the OpenAI-compatible ``/v1`` surface, and under ``/api/v2`` buyer API
keys with spend limits, usage reports and webhooks."""

from __future__ import annotations

import json
import math
import time
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, StreamingResponse

from dukenet.accounts.models import User
from dukenet.deps import (
    ApiKeyHeaderValue,
    BearerCredentials,
    CurrentUser,
    Session,
    SessionUser,
    State,
    current_user,
)
from dukenet.errors import DukenetError
from dukenet.gateway import keys, service, streaming, webhooks
from dukenet.gateway.errors import GatewayError
from dukenet.gateway.schemas import (
    BuyerKeyCreate,
    BuyerKeyCreated,
    BuyerKeyRead,
    BuyerKeyUpdate,
    UsageReport,
    WebhookAttemptRead,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryRead,
    WebhookRead,
)
from dukenet.kit.openapi import error_responses
from dukenet.kit.schema import Page

v1_router = APIRouter(prefix="/v1", tags=["gateway"])
router = APIRouter(tags=["gateway"])


async def gateway_user(
    request: Request,
    state: State,
    session: Session,
    credentials: BearerCredentials,
    x_api_key: ApiKeyHeaderValue,
) -> User:
    """Authenticate as every endpoint does (``Authorization: Bearer dk_...`` or an access
    token), answering failures in OpenAI's error shape."""
    try:
        return await current_user(request, state, session, credentials, x_api_key)
    except DukenetError as exc:
        raise GatewayError.from_domain(exc) from exc
    except HTTPException as exc:
        raise GatewayError(str(exc.detail), exc.status_code) from exc


GatewayUser = Annotated[User, Depends(gateway_user)]


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise GatewayError("the request body is not valid JSON") from None


@v1_router.post("/chat/completions")
async def chat_completions(
    request: Request, user: GatewayUser, session: Session, state: State
) -> Any:
    """Create a chat completion: the call becomes a DukeNET task (``model``: ``duke`` routes,
    an agent's name pins it) that this request waits for; ``stream: true`` answers in
    server-sent events. The ``dukenet`` extension carries the task, agent, price and receipt."""
    arrived = time.perf_counter()
    chat = service.parse_request(await _body(request), request.headers)
    settings = state.settings
    task, _ = await service.submit(
        session,
        settings=settings,
        champion=state.champion,
        user=user,
        api_key_id=getattr(request.state, "api_key_id", None),
        request=chat,
    )
    await session.commit()
    state.bell.new_work()
    timeout_s = min(chat.dukenet.timeout_s or math.inf, settings.gateway_timeout_s)

    async def completion() -> dict[str, Any]:
        done = await service.wait(
            state.sessionmaker,
            state.bell,
            user=user,
            task_id=task.id,
            timeout_s=timeout_s,
            poll_s=settings.gateway_poll_s,
        )
        return await service.finish(
            state.sessionmaker, settings=settings, user=user, task=done, accept=chat.dukenet.accept
        )

    if not chat.stream:
        return JSONResponse(await completion())
    include_usage = chat.stream_options is not None and chat.stream_options.include_usage
    frames = streaming.events(
        state.relay,
        task,
        model=chat.model,
        include_usage=include_usage,
        completion=completion,
        on_first_content=lambda: state.metrics.gateway_first_chunk_seconds.observe(
            time.perf_counter() - arrived
        ),
    )
    return StreamingResponse(
        frames, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@v1_router.get("/models")
async def list_models(user: GatewayUser, session: Session) -> dict[str, Any]:
    """List the models: ``duke`` (Duke routes) and every enabled agent by name (pinned)."""
    return await service.list_models(session)


def install(app: FastAPI) -> None:
    """Mount ``/v1`` on the app and answer its errors in OpenAI's shape."""

    async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GatewayError)
        return JSONResponse(exc.body(), status_code=exc.status_code)

    app.add_exception_handler(GatewayError, _gateway_error)
    app.include_router(v1_router)


# buyer API keys and usage


@router.post("/buyer-keys", status_code=status.HTTP_201_CREATED, response_model=BuyerKeyCreated)
async def create_buyer_key(
    data: BuyerKeyCreate, user: SessionUser, session: Session
) -> BuyerKeyCreated:
    """Create a buyer API key (``dk_...``, shown only here) with optional spend limits in
    satoshis per UTC day and in total; it works on ``/v1`` and on the task API."""
    key, secret = await keys.create(session, owner=user, data=data)
    await session.commit()
    read = await keys.get(session, owner=user, key_id=key.id)
    return BuyerKeyCreated(**read.model_dump(), key=secret)


@router.get("/buyer-keys", response_model=list[BuyerKeyRead])
async def list_buyer_keys(user: CurrentUser, session: Session) -> list[BuyerKeyRead]:
    """List your API keys with their limits and usage (calls, satoshis, tokens)."""
    return await keys.list_keys(session, owner=user)


@router.get("/buyer-keys/{key_id}", response_model=BuyerKeyRead)
async def get_buyer_key(key_id: uuid.UUID, user: CurrentUser, session: Session) -> BuyerKeyRead:
    """Show one of your API keys with its limits and usage."""
    return await keys.get(session, owner=user, key_id=key_id)


@router.patch("/buyer-keys/{key_id}", response_model=BuyerKeyRead)
async def update_buyer_key(
    key_id: uuid.UUID, data: BuyerKeyUpdate, user: SessionUser, session: Session
) -> BuyerKeyRead:
    """Replace a key's spend limits (null: unlimited)."""
    await keys.update_limits(session, owner=user, key_id=key_id, data=data)
    await session.commit()
    return await keys.get(session, owner=user, key_id=key_id)


@router.delete("/buyer-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_buyer_key(key_id: uuid.UUID, user: SessionUser, session: Session) -> None:
    """Revoke a key; it stops authenticating at once (its tasks go on)."""
    await keys.revoke(session, owner=user, key_id=key_id)
    await session.commit()


@router.get("/usage", response_model=UsageReport, responses=error_responses(400))
async def usage(
    user: CurrentUser,
    session: Session,
    group_by: list[str] = Query(default=["day", "agent"]),
    api_key_id: uuid.UUID | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> UsageReport:
    """Your calls, satoshis spent (refunds excluded) and tokens, grouped by ``day`` (UTC),
    ``agent`` and/or ``api_key``, over tasks created in ``[created_from, created_to)``."""
    return await keys.usage_report(
        session,
        buyer=user,
        group_by=group_by,
        api_key_id=api_key_id,
        created_from=created_from,
        created_to=created_to,
    )


# webhooks


@router.post("/webhooks", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
async def create_webhook(
    data: WebhookCreate, user: SessionUser, session: Session, state: State
) -> WebhookCreated:
    """Register an HTTPS endpoint for task events (all when ``events`` is empty); the signing
    secret is shown only here."""
    endpoint, secret = await webhooks.create_endpoint(
        session, settings=state.settings, owner=user, data=data
    )
    await session.commit()
    return WebhookCreated(**WebhookRead.model_validate(endpoint).model_dump(), secret=secret)


@router.get("/webhooks", response_model=list[WebhookRead])
async def list_webhooks(user: SessionUser, session: Session) -> list[WebhookRead]:
    """List your webhook endpoints."""
    return [
        WebhookRead.model_validate(e) for e in await webhooks.list_endpoints(session, owner=user)
    ]


@router.delete("/webhooks/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(endpoint_id: uuid.UUID, user: SessionUser, session: Session) -> None:
    """Stop sending events to an endpoint (deliveries already queued are still sent)."""
    await webhooks.deactivate(session, owner=user, endpoint_id=endpoint_id)
    await session.commit()


@router.get("/webhooks/{endpoint_id}/deliveries", response_model=Page[WebhookDeliveryRead])
async def list_deliveries(
    endpoint_id: uuid.UUID,
    user: SessionUser,
    session: Session,
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> Page[WebhookDeliveryRead]:
    """An endpoint's deliveries, newest first, each with its attempts (status, error, ms)."""
    rows, attempts, total = await webhooks.deliveries(
        session, owner=user, endpoint_id=endpoint_id, limit=limit, offset=offset
    )
    items = [
        WebhookDeliveryRead(
            **{
                name: getattr(d, name)
                for name in WebhookDeliveryRead.model_fields
                if name not in ("attempt_log", "status")
            },
            status=d.status.value,
            attempt_log=[WebhookAttemptRead.model_validate(a) for a in attempts[d.id]],
        )
        for d in rows
    ]
    return Page[WebhookDeliveryRead](items=items, total=total, limit=limit, offset=offset)
