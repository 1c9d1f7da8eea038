"""The API's embedded runners, off the API's event loop: one thread with an event loop, a
database engine and an HTTP client of its own runs ``embedded_runners`` runners.

On one loop with the request handlers the runners starved under load (issue #15: at 32
concurrent buyers tasks completed at under 1/s while 15-26/s were submitted), because every
await of a runner queued behind every ready request. In a thread of their own they get the
interpreter's time slices whatever the API's backlog. Stopping lets each runner finish the
task it holds (submitted, or released for a retry); a runner that dies with its task leaves a
lease that expires and returns the task to the queue, so nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping

import httpx
import structlog

from dukenet.agents.models import AgentKind
from dukenet.config import Settings
from dukenet.db import create_sessionmaker, engine_for
from dukenet.events.stream import DeltaRelay
from dukenet.files.storage import storage_from_settings
from dukenet.kit.bell import TaskBell
from dukenet.kit.netguard import EgressPolicy, guarded_client
from dukenet.kit.secrets import SecretBox
from dukenet.runners.base import Executor
from dukenet.runners.worker import Runner

log = structlog.get_logger(__name__)

ExecutorFactory = Callable[[httpx.AsyncClient, SecretBox | None], Mapping[AgentKind, Executor]]


class RunnerThread:
    """``count`` embedded runners on their own thread and event loop (``start``/``stop``
    from the API's loop)."""

    def __init__(
        self,
        settings: Settings,
        build_executors: ExecutorFactory,
        *,
        count: int,
        bell: TaskBell | None = None,
        relay: DeltaRelay | None = None,
    ) -> None:
        self._settings = settings
        self._build_executors = build_executors
        self._count = count
        self._bell = bell
        self._relay = relay
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="dukenet-runners", daemon=True)
        self.error: BaseException | None = None

    async def start(self) -> None:
        """Start the thread and return once its loop runs (or it failed to start)."""
        self._thread.start()
        await asyncio.to_thread(self._started.wait)
        if self.error is not None:
            raise RuntimeError("the embedded runners' thread did not start") from self.error

    async def stop(self) -> None:
        """Ask every runner to stop after its current task and wait for the thread to end."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
            if self._bell is not None:  # idle runners wait on the bell: they see stop now
                self._bell.new_work(fan_out=False)
        await asyncio.to_thread(self._thread.join)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # logged here: a thread has no caller
            self.error = exc
            log.exception("embedded runners' thread failed")
        finally:
            self._started.set()

    async def _run(self) -> None:
        settings = self._settings
        engine = engine_for(settings)
        try:
            egress = EgressPolicy.from_settings(settings)
            async with guarded_client(egress, timeout=settings.llm_timeout_s) as client:
                executors = self._build_executors(client, SecretBox.from_settings(settings))
                sessionmaker = create_sessionmaker(engine)
                storage = storage_from_settings(settings)
                runners = [
                    Runner(
                        sessionmaker,
                        settings,
                        executors,
                        name=f"embedded-{i}",
                        storage=storage,
                        bell=self._bell,
                        relay=self._relay,
                    )
                    for i in range(self._count)
                ]
                self._stop = asyncio.Event()
                self._loop = asyncio.get_running_loop()
                self._started.set()
                await asyncio.gather(*(r.run_forever(self._stop) for r in runners))
        finally:
            await engine.dispose()
