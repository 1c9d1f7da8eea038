"""The per-process hub of task events, fed from the database and fanned out through Redis.

Embedded default: each API process polls the database every ``events_poll_s`` seconds for tasks
whose ``updated_at`` moved and hands each change to its subscribers who may see it (the buyer,
the operator of the assigned agent, admins). With ``redis_url`` set, one process at a time (a
Redis lease, ``SET NX PX``) polls the database and publishes each change on one pub/sub channel;
every process subscribes to the channel and dispatches to its own subscribers, so a change is
read from the database once however many API processes run, and reaches a browser whichever
process holds its stream. The poll cursor lives in Redis, so a new leader continues where the
last one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.accounts.models import User, UserRole
from dukenet.agents.models import Agent
from dukenet.kit.orm import utcnow
from dukenet.tasks.models import Task

log = structlog.get_logger(__name__)

CHANNEL = "dukenet:task-events"
LEADER_KEY = "dukenet:task-events:leader"
CURSOR_KEY = "dukenet:task-events:cursor"
BATCH = 500
QUEUE_SIZE = 1_000


@dataclass(frozen=True)
class TaskEvent:
    """One observed state of a task: who may see it and its new status."""

    task_id: uuid.UUID
    buyer_id: uuid.UUID
    agent_id: uuid.UUID | None
    owner_id: uuid.UUID | None
    status: str
    updated_at: datetime

    def visible_to(self, user: User) -> bool:
        """Whether ``user`` may see this task: its buyer, its agent's operator, an admin."""
        return user.role is UserRole.ADMIN or self.buyer_id == user.id or self.owner_id == user.id

    def public(self) -> dict[str, str | None]:
        """Return what a subscriber receives (``task_id``, ``status``, ``agent_id``,
        ``updated_at`` ISO 8601)."""
        return {
            "task_id": str(self.task_id),
            "status": self.status,
            "agent_id": None if self.agent_id is None else str(self.agent_id),
            "updated_at": self.updated_at.isoformat(),
        }

    def to_json(self) -> str:
        """Serialise for the Redis channel."""
        return json.dumps(
            {
                **self.public(),
                "buyer_id": str(self.buyer_id),
                "owner_id": None if self.owner_id is None else str(self.owner_id),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> TaskEvent:
        """Parse what ``to_json`` wrote."""
        data = json.loads(text)
        return cls(
            task_id=uuid.UUID(data["task_id"]),
            buyer_id=uuid.UUID(data["buyer_id"]),
            agent_id=None if data["agent_id"] is None else uuid.UUID(data["agent_id"]),
            owner_id=None if data["owner_id"] is None else uuid.UUID(data["owner_id"]),
            status=data["status"],
            updated_at=datetime.fromisoformat(data["updated_at"]),
        )


async def changes_since(
    session: AsyncSession, cursor: datetime, seen: frozenset[tuple[uuid.UUID, str]]
) -> list[TaskEvent]:
    """Return the task changes with ``updated_at >= cursor``, oldest first (at most ``BATCH``),
    less those already seen at exactly ``cursor`` (``seen``: (task id, status) pairs)."""
    stmt = (
        select(Task.id, Task.buyer_id, Task.agent_id, Task.status, Task.updated_at, Agent.owner_id)
        .outerjoin(Agent, Agent.id == Task.agent_id)
        .where(Task.updated_at >= cursor)
        .order_by(Task.updated_at, Task.id)
        .limit(BATCH)
    )
    events = []
    for task_id, buyer_id, agent_id, status, updated_at, owner_id in await session.execute(stmt):
        event = TaskEvent(task_id, buyer_id, agent_id, owner_id, str(status.value), updated_at)
        if event.updated_at == cursor and (task_id, event.status) in seen:
            continue
        events.append(event)
    return events


@dataclass(eq=False)
class _Subscriber:
    user: User
    queue: asyncio.Queue[TaskEvent] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


class TaskEventHub:
    """Hands every task change to the subscribers of this process who may see it."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        poll_s: float = 1.0,
        redis_url: str = "",
    ) -> None:
        self.sessionmaker = sessionmaker
        self.poll_s = poll_s
        self.redis_url = redis_url
        self.node = uuid.uuid4().hex
        self._subscribers: set[_Subscriber] = set()
        self._cursor: datetime = utcnow()
        self._seen: frozenset[tuple[uuid.UUID, str]] = frozenset()
        self.published = 0  # changes this process read from the database and sent on

    @contextlib.contextmanager
    def subscribe(self, user: User) -> Iterator[asyncio.Queue[TaskEvent]]:
        """Register ``user`` for the events they may see; yields their queue (a slow reader's
        oldest events are dropped, never the hub blocked)."""
        sub = _Subscriber(user)
        self._subscribers.add(sub)
        try:
            yield sub.queue
        finally:
            self._subscribers.discard(sub)

    def dispatch(self, event: TaskEvent) -> None:
        """Put ``event`` on the queue of every subscriber allowed to see it."""
        for sub in list(self._subscribers):
            if not event.visible_to(sub.user):
                continue
            if sub.queue.full():
                sub.queue.get_nowait()
            sub.queue.put_nowait(event)

    async def poll_once(self) -> list[TaskEvent]:
        """Read the changes since the cursor from the database and advance it."""
        async with self.sessionmaker() as session:
            events = await changes_since(session, self._cursor, self._seen)
        if events:
            last = events[-1].updated_at
            same = {(e.task_id, e.status) for e in events if e.updated_at == last}
            self._seen = frozenset(same | (self._seen if last == self._cursor else set()))
            self._cursor = last
        self.published += len(events)
        return events

    async def run(self, stop: asyncio.Event) -> None:
        """Feed the hub until ``stop`` is set: from the database, or through Redis."""
        if self.redis_url:
            await self._run_redis(stop)
            return
        while not stop.is_set():
            try:
                for event in await self.poll_once():
                    self.dispatch(event)
            except Exception:  # a transient database error must not end the stream
                log.warning("task event poll failed", exc_info=True)
            await _wait(stop, self.poll_s)

    async def _run_redis(self, stop: asyncio.Event) -> None:
        redis = Redis.from_url(self.redis_url)
        try:
            listener = asyncio.create_task(self._listen(redis, stop))
            try:
                while not stop.is_set():
                    try:
                        await self._lead(redis)
                    except Exception:
                        log.warning("task event leader step failed", exc_info=True)
                    await _wait(stop, self.poll_s)
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
                with contextlib.suppress(Exception):
                    await redis.eval(_RELEASE, 1, LEADER_KEY, self.node)
        finally:
            await redis.aclose()

    async def _lead(self, redis: Redis) -> None:
        """Poll and publish if this process holds (or takes) the leader lease."""
        lease_ms = int(max(self.poll_s * 5, 2.0) * 1000)
        taken = await redis.set(LEADER_KEY, self.node, nx=True, px=lease_ms)
        if not taken:
            holder = await redis.get(LEADER_KEY)
            if holder is None or _text(holder) != self.node:
                return
            await redis.pexpire(LEADER_KEY, lease_ms)
        if taken:  # continue from the last leader's cursor
            stored = await redis.get(CURSOR_KEY)
            if stored is not None:
                self._cursor = max(self._cursor, datetime.fromisoformat(_text(stored)))
        events = await self.poll_once()
        for event in events:
            await redis.publish(CHANNEL, event.to_json())
        if events:
            await redis.set(CURSOR_KEY, self._cursor.isoformat())

    async def _listen(self, redis: Redis, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in _messages(pubsub, stop):
                        self.dispatch(TaskEvent.from_json(message))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("task event subscription failed; resubscribing", exc_info=True)
                await _wait(stop, self.poll_s)


# Delete the leader key only if this node still holds it.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


async def _messages(pubsub: object, stop: asyncio.Event) -> AsyncIterator[bytes]:
    while not stop.is_set():
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)  # type: ignore[attr-defined]
        if message is not None and message.get("type") == "message":
            yield message["data"]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
