"""In-process wake-ups between the API and its embedded runners: a new task wakes an idle
runner at once instead of at its next poll, and a task's change wakes whoever waits for it
(the gateway). Other processes (separate runners) are not reached; waiters poll as well.

The embedded runners run on an event loop of their own, in their own thread (runners/
background.py), so the bell works across loops and threads: each waiter's event belongs to
its own loop, and a ring from another thread reaches it through ``call_soon_threadsafe``."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
import weakref
from collections.abc import Iterator


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
    """Wake-ups for one process, any number of event loops and threads; ringing never blocks
    and is never required for correctness (every waiter has a timeout and re-reads the
    database)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # one "new work" event per loop whose runners wait (level-triggered, cleared by them)
        self._work: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
            weakref.WeakKeyDictionary()
        )
        self._watchers: dict[uuid.UUID, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def new_work(self) -> None:
        """Wake the idle runners: a task became claimable (call after its commit)."""
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

    def changed(self, task_id: uuid.UUID) -> None:
        """Wake the watchers of ``task_id`` (call after the change's commit)."""
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
