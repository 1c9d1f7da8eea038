"""In-process wake-ups between the API and its embedded runners: a new task wakes an idle
runner at once instead of at its next poll, and a task's change wakes whoever waits for it
(the gateway). Other processes (separate runners) are not reached; waiters poll as well."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator


class TaskBell:
    """Wake-ups for one process and event loop; ringing never blocks and is never required
    for correctness (every waiter has a timeout and re-reads the database)."""

    def __init__(self) -> None:
        self._work = asyncio.Event()
        self._watchers: dict[uuid.UUID, set[asyncio.Event]] = {}

    def new_work(self) -> None:
        """Wake the idle runners: a task became claimable (call after its commit)."""
        self._work.set()

    async def wait_for_work(self, timeout_s: float) -> None:
        """Return when ``new_work`` is rung or after ``timeout_s`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout_s)
        self._work.clear()

    def changed(self, task_id: uuid.UUID) -> None:
        """Wake the watchers of ``task_id`` (call after the change's commit)."""
        for event in self._watchers.get(task_id, ()):
            event.set()

    @contextlib.contextmanager
    def watch(self, task_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """Yield an event set whenever ``task_id`` changes (clear it after each wake-up)."""
        event = asyncio.Event()
        self._watchers.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            watchers = self._watchers.get(task_id)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._watchers[task_id]
