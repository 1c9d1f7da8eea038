"""Webhooks for task events: endpoints, the durable outbox and its signed deliveries.

Outbox: a mapper hook on ``Task`` writes one ``webhook_delivery`` row per subscribed endpoint
(the task's buyer's and its agent's operator's) in the flush, hence the transaction, that
changes the task's state, so an event exists exactly when its change committed. A dispatcher
(embedded in ``dukenet serve``; any number may share a database, rows are claimed with SKIP
LOCKED and a lease) sends due deliveries and retries failures with exponential backoff
(``webhook_backoff_s × 2^(attempt − 1)``, at most ``webhook_backoff_max_s``) up to
``webhook_max_attempts``; a delivery interrupted by a restart is sent again after its lease.

Signature (verify it with :func:`verify_signature`; the recipe in README): the header
``DukeNET-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
``HMAC-SHA256(secret, f"{t}.{raw body}")``; reject a ``t`` older than 5 minutes (replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import event, insert, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapper

from dukenet.accounts.models import User
from dukenet.config import Settings
from dukenet.db import in_transaction
from dukenet.errors import DukenetError, NotFound
from dukenet.gateway import repository
from dukenet.gateway.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from dukenet.gateway.schemas import WebhookCreate
from dukenet.kit import netguard
from dukenet.kit.orm import utcnow
from dukenet.kit.secrets import SecretBox
from dukenet.tasks.models import Task, TaskStatus

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "DukeNET-Signature"
EVENT_HEADER = "DukeNET-Event"
DELIVERY_HEADER = "DukeNET-Delivery"
SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300.0

# events of a task entering each status (``task.delivered`` goes with ``delivered_at``)
_STATUS_EVENTS: dict[TaskStatus, tuple[str, ...]] = {
    TaskStatus.ASSIGNED: ("task.assigned",),
    TaskStatus.COMPLETED: ("task.completed",),
    TaskStatus.REJECTED: ("task.rejected", "task.refunded"),
    TaskStatus.FAILED: ("task.failed", "task.refunded"),
    TaskStatus.CANCELLED: ("task.refunded",),
}


# signing


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """Return the ``DukeNET-Signature`` header value of ``body`` sent at ``timestamp`` (unix s)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """Return True if ``header`` (``t=...,v1=...``) signs the raw ``body`` with ``secret`` and
    its timestamp is within ``tolerance_s`` seconds of ``now`` (default: the clock)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))


# endpoints


def check_target(url: str, settings: Settings) -> None:
    """Accept a webhook URL: HTTPS (plain HTTP only to a network an admin allowed, as the test
    suite allows loopback), and an address the egress policy accepts, as for ``llm`` agents.

    Raises:
        DukenetError: 422 naming what is wrong with the URL.
    """
    policy = netguard.EgressPolicy.from_settings(settings)
    try:
        netguard.check_url(url, policy)
        if not url.lower().startswith("https://"):
            host = httpx.URL(url).host
            address = netguard.literal_address(host)
            if address is None or not any(
                address.version == n.version and address in n for n in policy.allowed_networks
            ):
                raise netguard.EgressRefused("webhook URLs must use https")
    except netguard.EgressRefused as exc:
        raise DukenetError(f"url: {exc}", status_code=422) from None


async def create_endpoint(
    session: AsyncSession, *, settings: Settings, owner: User, data: WebhookCreate
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint for ``owner``; return it and its signing secret (shown once).

    Raises:
        DukenetError: 422 for a URL the egress policy refuses (see :func:`check_target`).
    """
    check_target(data.url, settings)
    try:
        await netguard.check_url_resolved(data.url, netguard.EgressPolicy.from_settings(settings))
    except netguard.EgressRefused as exc:
        raise DukenetError(f"url: {exc}", status_code=422) from None
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(
        owner_id=owner.id,
        url=data.url,
        description=data.description,
        events=sorted(set(data.events)),
        secret_encrypted=SecretBox.from_settings(settings).encrypt(secret),
        is_active=True,
    )
    return await repository.add(session, endpoint), secret


async def own_endpoint(
    session: AsyncSession, *, owner: User, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    """Return one of ``owner``'s endpoints.

    Raises:
        NotFound: no such endpoint, or it is someone else's.
    """
    endpoint = await repository.get_endpoint(session, endpoint_id)
    if endpoint is None or endpoint.owner_id != owner.id:
        raise NotFound(f"webhook {endpoint_id} not found")
    return endpoint


async def list_endpoints(session: AsyncSession, *, owner: User) -> Sequence[WebhookEndpoint]:
    """Return ``owner``'s endpoints, newest first."""
    return await repository.list_endpoints(session, owner.id)


async def deactivate(
    session: AsyncSession, *, owner: User, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    """Stop sending events to one of ``owner``'s endpoints (pending deliveries still go).

    Raises:
        NotFound: no such endpoint, or it is someone else's.
    """
    endpoint = await own_endpoint(session, owner=owner, endpoint_id=endpoint_id)
    endpoint.is_active = False
    await session.flush()
    return endpoint


async def deliveries(
    session: AsyncSession, *, owner: User, endpoint_id: uuid.UUID, limit: int, offset: int
) -> tuple[Sequence[WebhookDelivery], dict[uuid.UUID, list[WebhookAttempt]], int]:
    """Return a page of an endpoint's deliveries (newest first), their attempts and the total.

    Raises:
        NotFound: no such endpoint, or it is someone else's.
    """
    await own_endpoint(session, owner=owner, endpoint_id=endpoint_id)
    rows, total = await repository.list_deliveries(session, endpoint_id, limit=limit, offset=offset)
    return rows, await repository.attempts_for(session, [d.id for d in rows]), total


# the outbox


def _events_of(task: Task, created: bool) -> list[str]:
    """The events of a task's flush: a delivery when ``delivered_at`` is set (whatever flush
    does it), the events of the status it enters, and an assignment to a new agent."""
    if created:
        return list(_STATUS_EVENTS.get(task.status, ()))
    state = inspect(task)
    found: list[str] = []
    delivered = state.attrs.delivered_at.history
    if delivered.has_changes() and task.delivered_at is not None:
        found.append("task.delivered")
    if state.attrs.status.history.has_changes():
        found.extend(e for e in _STATUS_EVENTS.get(task.status, ()) if e not in found)
    elif task.status is TaskStatus.ASSIGNED and state.attrs.agent_id.history.has_changes():
        found.append("task.assigned")  # failed over to another agent
    return found


def _payload(task: Task, event_name: str, delivery_id: uuid.UUID) -> dict[str, Any]:
    return {
        "id": str(delivery_id),
        "type": event_name,
        "created_at": utcnow().isoformat(),
        "data": {
            "task": {
                "id": str(task.id),
                "status": task.status.value,
                "agent_id": str(task.agent_id) if task.agent_id else None,
                "complexity": task.complexity,
                "price_sat": task.price_sat,
                "escrow_sat": task.escrow_sat,
                "attempts": task.attempts,
                "error": task.error,
            }
        },
    }


def _write_outbox(connection: Connection, task: Task, created: bool) -> None:
    names = _events_of(task, created)
    if not names:
        return
    endpoints = connection.execute(
        repository.endpoints_for_task_query(task.buyer_id, task.agent_id)
    ).all()
    rows = []
    for endpoint_id, subscribed in endpoints:
        for name in names:
            if subscribed and name not in subscribed:
                continue
            delivery_id = uuid.uuid4()
            rows.append(
                {
                    "id": delivery_id,
                    "endpoint_id": endpoint_id,
                    "event": name,
                    "task_id": task.id,
                    "payload": _payload(task, name, delivery_id),
                    "status": DeliveryStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": utcnow(),
                    "created_at": utcnow(),
                }
            )
    if rows:
        connection.execute(insert(WebhookDelivery), rows)


@event.listens_for(Task, "after_insert")
def _task_inserted(mapper: Mapper[Task], connection: Connection, task: Task) -> None:
    _write_outbox(connection, task, created=True)


@event.listens_for(Task, "after_update")
def _task_updated(mapper: Mapper[Task], connection: Connection, task: Task) -> None:
    _write_outbox(connection, task, created=False)


# the dispatcher


def backoff_s(settings: Settings, attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones (exponential, capped)."""
    return float(
        min(settings.webhook_backoff_s * 2 ** max(attempts - 1, 0), settings.webhook_backoff_max_s)
    )


class Dispatcher:
    """Sends due outbox deliveries, signed, and records every attempt."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        client: httpx.AsyncClient,
        *,
        batch: int = 20,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._client = client
        self._box = SecretBox.from_settings(settings)
        self._batch = batch

    async def _claim(self, session: AsyncSession) -> list[tuple[uuid.UUID, str, str, int, bytes]]:
        now = utcnow()
        lease = now + timedelta(seconds=self._settings.webhook_timeout_s * 2 + 5)
        claimed = []
        for delivery, endpoint in await repository.claim_due(session, now, limit=self._batch):
            delivery.attempts += 1
            delivery.next_attempt_at = lease  # sent again after the lease if this process dies
            body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
            claimed.append(
                (delivery.id, endpoint.url, endpoint.secret_encrypted, delivery.attempts, body)
            )
        await session.flush()
        return claimed

    async def run_once(self) -> int:
        """Send the deliveries due now; return how many were tried."""
        claimed = await in_transaction(self._sessionmaker, self._claim)
        await asyncio.gather(*(self._send(*item) for item in claimed))
        return len(claimed)

    async def _send(
        self, delivery_id: uuid.UUID, url: str, secret_encrypted: str, attempt: int, body: bytes
    ) -> None:
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            secret = self._box.decrypt(secret_encrypted)
            payload = json.loads(body)
            response = await self._client.post(
                url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(secret, body, int(time.time())),
                    EVENT_HEADER: payload["type"],
                    DELIVERY_HEADER: str(delivery_id),
                    "User-Agent": "DukeNET-Webhooks/1",
                },
                timeout=self._settings.webhook_timeout_s,
            )
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"answered {status_code}: {response.text[:200]}"
        except Exception as exc:  # any failure is one failed attempt, retried
            error = f"{type(exc).__name__}: {exc}"[:500]
        duration_ms = (time.perf_counter() - started) * 1000

        async def record(session: AsyncSession) -> None:
            delivery = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
            if delivery is None or delivery.status is not DeliveryStatus.PENDING:
                return
            session.add(
                WebhookAttempt(
                    delivery_id=delivery_id,
                    attempt=attempt,
                    status_code=status_code,
                    error=error,
                    duration_ms=duration_ms,
                )
            )
            delivery.last_status_code = status_code
            delivery.last_error = error
            now = utcnow()
            if error is None:
                delivery.status = DeliveryStatus.DELIVERED
                delivery.delivered_at = now
            elif attempt >= self._settings.webhook_max_attempts:
                delivery.status = DeliveryStatus.FAILED
            else:
                delivery.next_attempt_at = now + timedelta(
                    seconds=backoff_s(self._settings, attempt)
                )
            await session.flush()

        await in_transaction(self._sessionmaker, record)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Send due deliveries until ``stop`` is set, polling every ``webhook_poll_s``."""
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("webhook dispatch failed")
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._settings.webhook_poll_s)
