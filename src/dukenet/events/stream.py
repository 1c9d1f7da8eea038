"""The relay of an answer while its agent streams it: runner → the gateway request waiting for it.

A runner that executes a streaming chat task (``ChatPayload.stream``) hands each piece of text the
agent sends to a :class:`DeltaSink`; the relay keeps a task's pieces in order and wakes the
readers of that task, whatever thread or event loop they (and the runner) run on. Pieces carry
the attempt they belong to and their character offset within it, so a piece sent twice (a
retried POST from a remote runner) is kept once and a gap is refused. The relay is bounded:
``max_chars`` per task (later text is not relayed: the reader sends it from the stored result),
``max_tasks`` buffers at once, and a buffer nobody reads is dropped after ``idle_s`` seconds.

With ``redis_url`` set, :meth:`DeltaRelay.run_fanout` also publishes every piece published
here on one Redis channel and adds the pieces other processes publish there, so the piece a
remote runner posts to one API process (or an embedded runner of another process relays) reaches
the gateway request wherever it is held. Pieces of other processes are buffered like local ones
(bounded and dropped when idle just the same); a piece lost on the way only means that the
reader sends the rest of the answer from the stored result.

Nothing here is needed for correctness: the stored result is the answer, and the gateway sends
whatever the relay did not carry once the task is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis

log = structlog.get_logger(__name__)

CHANNEL = "dukenet:task-deltas"
OUTBOX_SIZE = 10_000

MAX_CHARS = 1_000_000
MAX_TASKS = 10_000
IDLE_S = 120.0


@dataclass(frozen=True)
class Delta:
    """A piece of an answer: the attempt that produced it, its offset in characters within
    that attempt's answer, and the text."""

    attempt: int
    offset: int
    text: str


class StreamReader:
    """One reader of one task's pieces, on the event loop that subscribed it."""

    def __init__(self, relay: DeltaRelay, task_id: uuid.UUID) -> None:
        self._relay = relay
        self.task_id = task_id
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._index = 0

    def take(self) -> list[Delta]:
        """Return the pieces that arrived since the last call, in order."""
        pieces, self._index = self._relay._read(self.task_id, self._index)
        return pieces

    async def wait(self) -> None:
        """Return once a piece arrived since the last ``take`` or ``wait`` (at once if one
        did)."""
        await self._event.wait()
        self._event.clear()

    def _wake(self) -> None:
        """Wake ``wait`` from any thread (a runner's own loop or thread)."""
        with contextlib.suppress(RuntimeError):  # the reader's loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._event.set)


@dataclass(eq=False)
class _Buffer:
    pieces: list[Delta] = field(default_factory=list)
    lengths: dict[int, int] = field(default_factory=dict)  # attempt -> characters held
    chars: int = 0
    readers: set[StreamReader] = field(default_factory=set)
    touched_at: float = field(default_factory=time.monotonic)


class DeltaRelay:
    """Per-process, thread-safe buffers of streamed answers by task, with their readers."""

    def __init__(
        self, *, max_chars: int = MAX_CHARS, max_tasks: int = MAX_TASKS, idle_s: float = IDLE_S
    ) -> None:
        self.max_chars = max_chars
        self.max_tasks = max_tasks
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._buffers: dict[uuid.UUID, _Buffer] = {}
        self.dropped_chars = 0  # text refused for a full buffer (the reader sends it later)
        self.node = uuid.uuid4().hex
        self._fanout: tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]] | None = None

    def publish(self, task_id: uuid.UUID, delta: Delta, *, fan_out: bool = True) -> bool:
        """Add ``delta`` to the task's answer and wake its readers (and, with the Redis
        fan-out running and ``fan_out``, send it to the other processes); callable from any
        thread, never blocks. Returns whether the relay holds the piece now (False: a gap
        before its offset, or the task's buffer is full)."""
        if not delta.text:
            return True
        fanout = self._fanout
        if fan_out and fanout is not None:
            message = json.dumps(
                {
                    "node": self.node,
                    "task_id": str(task_id),
                    "attempt": delta.attempt,
                    "offset": delta.offset,
                    "text": delta.text,
                }
            )
            with contextlib.suppress(RuntimeError):  # the loop is closed: the app stopped
                fanout[0].call_soon_threadsafe(_offer, fanout[1], message)
        with self._lock:
            buffer = self._buffers.get(task_id)
            if buffer is None:
                self._prune()
                buffer = self._buffers[task_id] = _Buffer()
            buffer.touched_at = time.monotonic()
            held = buffer.lengths.get(delta.attempt, 0)
            end = delta.offset + len(delta.text)
            if end <= held:  # sent before (a retried request)
                return True
            if delta.offset > held:
                return False
            text = delta.text[held - delta.offset :]  # the part not held yet
            if buffer.chars + len(text) > self.max_chars:
                self.dropped_chars += len(text)
                return False
            buffer.pieces.append(Delta(delta.attempt, held, text))
            buffer.lengths[delta.attempt] = end
            buffer.chars += len(text)
            readers = list(buffer.readers)
        for reader in readers:
            reader._wake()
        return True

    @contextlib.contextmanager
    def subscribe(self, task_id: uuid.UUID) -> Iterator[StreamReader]:
        """Read ``task_id``'s pieces from the first one (also those that arrived before the
        subscription); the task's buffer is dropped when its last reader leaves."""
        reader = StreamReader(self, task_id)
        with self._lock:
            buffer = self._buffers.get(task_id)
            if buffer is None:
                self._prune()
                buffer = self._buffers[task_id] = _Buffer()
            buffer.readers.add(reader)
            if buffer.pieces:
                reader._wake()
        try:
            yield reader
        finally:
            with self._lock:
                buffer = self._buffers.get(task_id)
                if buffer is not None:
                    buffer.readers.discard(reader)
                    if not buffer.readers:
                        del self._buffers[task_id]

    async def run_fanout(self, redis_url: str, stop: asyncio.Event) -> None:
        """Exchange pieces with the other processes through Redis until ``stop`` is set (a
        lifespan worker): publish this process's pieces, add theirs. A failing Redis is
        retried every second; pieces meanwhile are dropped."""
        redis = Redis.from_url(redis_url)
        outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX_SIZE)
        self._fanout = (asyncio.get_running_loop(), outbox)
        workers = [
            asyncio.create_task(self._forward(redis, outbox)),
            asyncio.create_task(self._listen(redis)),
        ]
        try:
            await stop.wait()
        finally:
            self._fanout = None
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await redis.aclose()

    async def _forward(self, redis: Redis, outbox: asyncio.Queue[str]) -> None:
        while True:
            message = await outbox.get()
            try:
                await redis.publish(CHANNEL, message)
            except Exception:
                log.warning("relaying a streamed piece through Redis failed", exc_info=True)
                await asyncio.sleep(1.0)

    async def _listen(self, redis: Redis) -> None:
        while True:
            try:
                await listen_forever(redis, CHANNEL, self._receive)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("streamed pieces' Redis subscription failed", exc_info=True)
                await asyncio.sleep(1.0)

    def _receive(self, raw: bytes | str) -> None:
        """Add a piece another process published (its own are skipped)."""
        try:
            data = json.loads(raw)
            if data["node"] == self.node:
                return
            delta = Delta(int(data["attempt"]), int(data["offset"]), str(data["text"]))
            task_id = uuid.UUID(data["task_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("a malformed streamed piece on Redis was skipped")
            return
        self.publish(task_id, delta, fan_out=False)

    def sink(self, task_id: uuid.UUID, attempt: int) -> RelaySink:
        """Return the sink through which an in-process runner relays ``attempt``'s answer."""
        return RelaySink(self, task_id, attempt)

    def buffered_tasks(self) -> int:
        """How many tasks have a buffer now."""
        with self._lock:
            return len(self._buffers)

    def _read(self, task_id: uuid.UUID, index: int) -> tuple[list[Delta], int]:
        with self._lock:
            buffer = self._buffers.get(task_id)
            if buffer is None:
                return [], index
            return buffer.pieces[index:], len(buffer.pieces)

    def _prune(self) -> None:
        """Drop unread buffers idle for ``idle_s``, then the oldest unread ones past
        ``max_tasks`` (the lock is held)."""
        now = time.monotonic()
        for task_id, buffer in list(self._buffers.items()):
            if not buffer.readers and now - buffer.touched_at > self.idle_s:
                del self._buffers[task_id]
        if len(self._buffers) >= self.max_tasks:
            unread = sorted((b.touched_at, t) for t, b in self._buffers.items() if not b.readers)
            for _, task_id in unread[: len(self._buffers) - self.max_tasks + 1]:
                del self._buffers[task_id]


async def listen_forever(
    redis: Redis,
    channel: str,
    handle: Callable[[bytes | str], None],
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Subscribe to ``channel`` and call ``handle`` with each message's data until cancelled,
    setting ``ready`` once Redis confirmed the subscription; raises when the connection
    fails (the caller retries)."""
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(channel)
        async for message in pubsub.listen():
            kind = message.get("type")
            if kind == "message":
                handle(message["data"])
            elif kind == "subscribe" and ready is not None:
                ready.set()


def _offer(outbox: asyncio.Queue[str], message: str) -> None:
    """Queue a piece for Redis; drop it when the queue is full (Redis is too slow or down)."""
    with contextlib.suppress(asyncio.QueueFull):
        outbox.put_nowait(message)


class RelaySink:
    """Relays one attempt's answer into a :class:`DeltaRelay`, piece by piece (a
    ``runners.base.DeltaSink``)."""

    def __init__(self, relay: DeltaRelay, task_id: uuid.UUID, attempt: int) -> None:
        self._relay = relay
        self._task_id = task_id
        self._attempt = attempt
        self._offset = 0

    def send(self, text: str) -> None:
        """Relay the next piece of the answer (never blocks, never raises)."""
        self._relay.publish(self._task_id, Delta(self._attempt, self._offset, text))
        self._offset += len(text)
