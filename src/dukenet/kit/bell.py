"""Wake-ups between the API, its runners and the gateway: a new task wakes an idle runner at
once instead of at its next poll, and a task's change wakes whoever waits for it (the gateway).

The embedded runners run on an event loop of their own, in their own thread (runners/
background.py), so the bell works across loops and threads: each waiter's event belongs to
its own loop, and a ring from another thread reaches it through ``call_soon_threadsafe``.

Other processes (``serve --workers``, ``dukenet runner``) are reached through a fan-out that
``attach``es to the bell (events/bell.py: Redis pub/sub or PostgreSQL LISTEN/NOTIFY): every
ring is also handed to it, and the rings it brings from other processes are rung here with
``fan_out=False``. Without one (SQLite, one process) the bell stays in-process; waiters poll
as well, so a lost ring only costs a poll interval."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator

# what a fan-out is handed for each ring: None for new work, else the changed task's id; it is
# called from any thread and must never block
RingSender = Callable[[uuid.UUID | None], None]


def _set(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    """Set ``event`` (of ``loop``) from any thread; a closed loop has nobody left to wake."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        event.set()
        return
    with contextlib.suppress(RuntimeError):  # the loop is closed
        loop.call_soon_threadsafe(event.set)


class TaskBell:
    """Wake-ups for one process, any number of event loops and threads (and, with a fan-out
    attached, other processes); ringing never blocks and is never required for correctness
    (every waiter has a timeout and re-reads the database)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # one "new work" event per loop whose runners wait (level-triggered, cleared by them)
        self._work: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
            weakref.WeakKeyDictionary()
        )
        self._watchers: dict[uuid.UUID, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._sender: RingSender | None = None

    def attach(self, sender: RingSender | None) -> None:
        """Hand every later ring (but those rung with ``fan_out=False``) to ``sender`` as well,
        the other processes' fan-out; None detaches it."""
        self._sender = sender

    def new_work(self, *, fan_out: bool = True) -> None:
        """Wake the idle runners: a task became claimable (call after its commit); with
        ``fan_out``, those of the other processes too, through the attached fan-out."""
        sender = self._sender
        if fan_out and sender is not None:
            sender(None)
        with self._lock:
            waiting = list(self._work.items())
        for loop, event in waiting:
            _set(loop, event)

    async def wait_for_work(self, timeout_s: float) -> None:
        """Return when ``new_work`` is rung or after ``timeout_s`` seconds."""
        loop = asyncio.get_running_loop()
        with self._lock:
            event = self._work.get(loop)
            if event is None:
                event = self._work[loop] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)
        event.clear()

    def changed(self, task_id: uuid.UUID, *, fan_out: bool = True) -> None:
        """Wake the watchers of ``task_id`` (call after the change's commit); with
        ``fan_out``, those of the other processes too."""
        sender = self._sender
        if fan_out and sender is not None:
            sender(task_id)
        with self._lock:
            watchers = list(self._watchers.get(task_id, ()))
        for loop, event in watchers:
            _set(loop, event)

    @contextlib.contextmanager
    def watch(self, task_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """Yield an event (of the running loop) set whenever ``task_id`` changes; clear it
        after each wake-up."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._watchers.setdefault(task_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                watchers = self._watchers.get(task_id)
                if watchers is not None:
                    watchers.discard(entry)
                    if not watchers:
                        del self._watchers[task_id]
