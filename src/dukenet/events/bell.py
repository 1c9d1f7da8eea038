"""The wake-up bell across processes: what one process rings (new work, a task changed) wakes
the runners and gateway calls waiting in the others.

With ``serve --workers N`` each API process has its own :class:`~dukenet.kit.bell.TaskBell`,
and so have ``dukenet runner`` processes; alone, a bell reaches only its own process, and a
gateway call held by another process answers up to ``gateway_poll_s`` after its task is
delivered, an idle runner elsewhere claims up to ``runner_poll_s`` after a task arrives. A
:class:`BellFanout` attached to the bell carries its rings to the other processes and theirs to
it, over:

- Redis pub/sub (one channel, ``CHANNEL``) when ``redis_url`` is set, as the streamed answers'
  relay does (events/stream.py);
- else PostgreSQL ``LISTEN``/``NOTIFY`` on the database itself (one channel, ``PG_CHANNEL``;
  a connection of its own that listens, one that notifies), except behind PgBouncer in
  transaction mode (``database_pooler=pgbouncer``), which does not carry ``LISTEN``;
- else nothing: SQLite serves one process, where the bell is enough.

Rings are coalesced while a message is on its way (one "new work" and each changed task once),
sent as JSON ``{"node", "work", "tasks"}`` with at most ``MAX_TASKS_PER_MESSAGE`` task ids
(under PostgreSQL's 8,000-byte ``NOTIFY`` payload); a process skips its own. Nothing here is
needed for correctness: every waiter still polls, so a ring lost while the transport is down
costs at most a poll interval; a failing transport is retried every ``RETRY_S`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, Protocol

import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from dukenet.config import Settings
from dukenet.db import CONNECT_TIMEOUT_S, is_sqlite
from dukenet.events.stream import listen_forever
from dukenet.kit.bell import TaskBell

log = structlog.get_logger(__name__)

CHANNEL = "dukenet:task-bell"
PG_CHANNEL = "dukenet_task_bell"
MAX_TASKS_PER_MESSAGE = 100
MAX_PENDING_TASKS = 10_000
RETRY_S = 1.0
KEEPALIVE_S = 30.0

BellTransportKind = Literal["redis", "postgres", "process"]


def transport_kind(settings: Settings) -> BellTransportKind:
    """Return how this process's bell reaches the others: ``redis`` with ``redis_url``, else
    ``postgres`` on PostgreSQL reached directly, else ``process`` (in-process only)."""
    if settings.redis_url:
        return "redis"
    if is_sqlite(settings.resolved_database_url) or settings.database_pooler == "pgbouncer":
        return "process"
    return "postgres"


class BellTransport(Protocol):
    """Where rings travel between processes."""

    async def publish(self, message: str) -> None:
        """Send ``message`` to every process listening (this one too)."""
        ...

    async def listen(self, handle: Callable[[str | bytes], None], ready: asyncio.Event) -> None:
        """Call ``handle`` with each message until cancelled, setting ``ready`` once
        subscribed; raise when the subscription is lost."""
        ...

    async def aclose(self) -> None:
        """Release the transport's connections."""
        ...


class RedisBellTransport:
    """Rings on one Redis pub/sub channel."""

    def __init__(self, redis_url: str) -> None:
        self._redis = Redis.from_url(redis_url)

    async def publish(self, message: str) -> None:
        """Publish ``message`` on ``CHANNEL``."""
        await self._redis.publish(CHANNEL, message)

    async def listen(self, handle: Callable[[str | bytes], None], ready: asyncio.Event) -> None:
        """Subscribe to ``CHANNEL`` and hand each message to ``handle``."""
        await listen_forever(self._redis, CHANNEL, handle, ready=ready)

    async def aclose(self) -> None:
        """Close the Redis connections."""
        await self._redis.aclose()


class PostgresBellTransport:
    """Rings as PostgreSQL notifications on ``PG_CHANNEL``: one connection listens, another
    sends ``pg_notify``; both are this transport's own, outside the engine's pool."""

    def __init__(self, database_url: str) -> None:
        self._engine = create_async_engine(
            database_url, poolclass=NullPool, connect_args={"timeout": CONNECT_TIMEOUT_S}
        )
        self._sender: Any = None  # the asyncpg connection that notifies, opened on first use
        self._sender_stack = contextlib.AsyncExitStack()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """Yield a raw asyncpg connection in autocommit (closed on leaving)."""
        async with self._engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            raw = await conn.get_raw_connection()
            yield raw.driver_connection

    async def publish(self, message: str) -> None:
        """``NOTIFY`` ``message`` on ``PG_CHANNEL`` (a lost connection is reopened next time)."""
        if self._sender is None:
            self._sender = await self._sender_stack.enter_async_context(self._connection())
        try:
            await self._sender.execute("SELECT pg_notify($1, $2)", PG_CHANNEL, message)
        except BaseException:
            await self._close_sender()
            raise

    async def listen(self, handle: Callable[[str | bytes], None], ready: asyncio.Event) -> None:
        """``LISTEN`` on ``PG_CHANNEL`` and hand each payload to ``handle``; check the
        connection every ``KEEPALIVE_S`` seconds (a silently dropped one raises)."""
        async with self._connection() as conn:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(PG_CHANNEL, lambda _c, _pid, _channel, payload: handle(payload))
            ready.set()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), KEEPALIVE_S)
                if lost.is_set():
                    raise ConnectionError("the bell's LISTEN connection was closed")
                await conn.execute("SELECT 1")

    async def _close_sender(self) -> None:
        self._sender = None
        with contextlib.suppress(Exception):  # it may be broken already
            await self._sender_stack.aclose()

    async def aclose(self) -> None:
        """Close both connections."""
        await self._close_sender()
        await self._engine.dispose()


def open_transport(settings: Settings) -> BellTransport | None:
    """Return the transport ``transport_kind`` names for ``settings`` (None: in-process)."""
    kind = transport_kind(settings)
    if kind == "redis":
        return RedisBellTransport(settings.redis_url)
    if kind == "postgres":
        return PostgresBellTransport(settings.resolved_database_url)
    return None


class BellFanout:
    """Carries one process's :class:`TaskBell` rings to the other processes and theirs to it
    (``run`` as a lifespan worker)."""

    def __init__(self, bell: TaskBell) -> None:
        self.bell = bell
        self.node = uuid.uuid4().hex
        self.listening = asyncio.Event()  # set while subscribed to the other processes' rings
        self.sent = 0  # messages published
        self.received = 0  # messages of other processes rung here
        self._loop: asyncio.AbstractEventLoop | None = None
        self._work = False
        self._tasks: set[uuid.UUID] = set()
        self._pending = asyncio.Event()

    async def run(self, transport: BellTransport, stop: asyncio.Event) -> None:
        """Exchange rings through ``transport`` until ``stop`` is set, then close it."""
        self._loop = asyncio.get_running_loop()
        self.bell.attach(self._offer)
        workers = [
            asyncio.create_task(self._send(transport)),
            asyncio.create_task(self._listen(transport)),
        ]
        try:
            await stop.wait()
        finally:
            self.bell.attach(None)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.listening.clear()
            await transport.aclose()

    def _offer(self, task_id: uuid.UUID | None) -> None:
        """Queue a ring for the other processes (the bell calls this from any thread)."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._add(task_id)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the app stopped
            loop.call_soon_threadsafe(self._add, task_id)

    def _add(self, task_id: uuid.UUID | None) -> None:
        if task_id is None:
            self._work = True
        elif len(self._tasks) < MAX_PENDING_TASKS:  # past it the watchers poll
            self._tasks.add(task_id)
        self._pending.set()

    def _take(self) -> list[str]:
        """Return the pending rings as messages and forget them."""
        work, tasks = self._work, sorted(str(t) for t in self._tasks)
        self._work, self._tasks = False, set()
        self._pending.clear()
        messages = []
        for start in range(0, max(len(tasks), 1), MAX_TASKS_PER_MESSAGE):
            chunk = tasks[start : start + MAX_TASKS_PER_MESSAGE]
            if chunk or work:
                messages.append(json.dumps({"node": self.node, "work": work, "tasks": chunk}))
            work = False  # once is enough
        return messages

    async def _send(self, transport: BellTransport) -> None:
        while True:
            await self._pending.wait()
            for message in self._take():
                try:
                    await transport.publish(message)
                    self.sent += 1
                except Exception:
                    log.warning("ringing the other processes failed", exc_info=True)
                    await asyncio.sleep(RETRY_S)

    async def _listen(self, transport: BellTransport) -> None:
        while True:
            try:
                await transport.listen(self._receive, self.listening)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("the bell's subscription to other processes failed", exc_info=True)
            self.listening.clear()
            await asyncio.sleep(RETRY_S)

    def _receive(self, raw: str | bytes) -> None:
        """Ring here what another process rang (this process's own messages are skipped)."""
        try:
            data = json.loads(raw)
            if data["node"] == self.node:
                return
            work = bool(data["work"])
            tasks = [uuid.UUID(task_id) for task_id in data["tasks"]]
        except (ValueError, KeyError, TypeError):
            log.warning("a malformed ring from another process was skipped")
            return
        self.received += 1
        for task_id in tasks:
            self.bell.changed(task_id, fan_out=False)
        if work:
            self.bell.new_work(fan_out=False)


def start_fanout(
    bell: TaskBell, settings: Settings, stop: asyncio.Event
) -> tuple[BellFanout, asyncio.Task[None]] | None:
    """Start carrying ``bell``'s rings to the other processes through the transport
    ``settings`` call for (``transport_kind``) until ``stop`` is set: return the fan-out and
    its task (await it after setting ``stop``), or None when the bell stays in-process."""
    transport = open_transport(settings)
    if transport is None:
        return None
    fanout = BellFanout(bell)
    return fanout, asyncio.create_task(fanout.run(transport, stop))
