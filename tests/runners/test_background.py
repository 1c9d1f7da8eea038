"""The API's embedded runners on a thread and event loop of their own: they keep working while
the API's loop is busy (here: blocked outright), and a shutdown loses no task."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select

from dukenet.config import Settings
from dukenet.db import create_engine, create_sessionmaker
from dukenet.kit.state import AppState
from dukenet.ledger import service as ledger_service
from dukenet.main import create_app
from dukenet.tasks.models import Task, TaskStatus
from tests.factories import create_admin, credit, register, replay_agent, submit_task

pytestmark = [
    pytest.mark.slow,
    # the loop's behaviour is the backend's business in no way; sqlite3 reads it while blocked
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]
FINISHED = ("delivered", "completed", "failed")


@dataclass
class Market:
    """A running app, a client on it and a funded buyer's headers."""

    client: httpx.AsyncClient
    buyer: dict[str, str]
    database_url: str

    def finished(self) -> int:
        """Count finished tasks with the blocking sqlite3 module (the loop may stay blocked)."""
        path = self.database_url.split("///", 1)[1]
        with sqlite3.connect(path) as conn:
            marks = ",".join("?" * len(FINISHED))
            row = conn.execute(f"SELECT count(*) FROM task WHERE status IN ({marks})", FINISHED)
            return int(row.fetchone()[0])

    async def wait_finished(self, n: int, timeout_s: float = 120) -> None:
        """Wait (yielding to the loop) until ``n`` tasks are finished."""
        deadline = time.monotonic() + timeout_s
        while self.finished() < n:
            assert time.monotonic() < deadline, f"fewer than {n} tasks finished in {timeout_s} s"
            await asyncio.sleep(0.1)

    async def submit(self, n: int) -> None:
        """Submit ``n`` tasks."""
        for _ in range(n):
            assert (await submit_task(self.client, self.buyer)).status_code == 201


@asynccontextmanager
async def market(settings: Settings, *, threaded: bool) -> AsyncIterator[Market]:
    """The app with 2 embedded runners, on their own thread or on the API's loop, a replay
    agent and a funded buyer; the lifespan exits (runners stop) on leaving."""
    app = create_app(
        settings.model_copy(
            update={
                "embedded_runners": 2,
                "embedded_runners_thread": threaded,
                "runner_poll_s": 0.05,
                # The task-event hub polls the database on the API's loop; on SQLite every
                # transaction takes the write lock (BEGIN IMMEDIATE), so a poll caught mid-way
                # by the test's blocking of that loop would hold the lock and stall the runners'
                # writes for the whole block. Poll once at start, not during the block.
                "events_poll_s": 3600.0,
            }
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v2") as client:
            state: AppState = app.state.dukenet
            _, admin = await create_admin(state)
            await replay_agent(client, admin, base_price_sat=100)
            buyer, headers = await register(client)
            await credit(client, admin, buyer["id"], 10**8)
            yield Market(client, headers, settings.resolved_database_url)


class TestRunnersOffTheApiLoop:
    @pytest.mark.parametrize("threaded", [True, False], ids=["thread", "api-loop"])
    async def test_tasks_finish_while_the_api_loop_is_blocked(
        self, settings: Settings, threaded: bool
    ) -> None:
        async with market(settings, threaded=threaded) as m:
            await m.submit(1)
            await m.wait_finished(1)  # the replay agent has loaded its data
            await m.submit(20)
            # Block the API's event loop (as a CPU-bound burst of requests would) and watch.
            before = m.finished()
            deadline = time.monotonic() + (60 if threaded else 3)
            while m.finished() < 21 and time.monotonic() < deadline:
                time.sleep(0.1)  # noqa: ASYNC251 - blocking the loop is the point
            finished = m.finished()
        if threaded:
            assert finished == 21  # the rest ran while the API's loop was stuck
        else:
            # the control: on the API's loop the runners stood still for 3 s
            assert finished == before

    async def test_shutdown_finishes_or_leaves_every_task_queued(self, settings: Settings) -> None:
        async with market(settings, threaded=True) as m:
            await m.submit(1)
            await m.wait_finished(1)
            await m.submit(12)
            await asyncio.sleep(0.2)  # the runners are mid-queue when the lifespan exits
        engine = create_engine(settings.resolved_database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                tasks = (await session.execute(select(Task))).scalars().all()
                check = await ledger_service.check(session)
        finally:
            await engine.dispose()
        assert len(tasks) == 13
        statuses = {t.status for t in tasks}
        # none left executing under a lease only a stopped runner could renew
        final = {TaskStatus.DELIVERED, TaskStatus.COMPLETED, TaskStatus.FAILED}
        assert statuses <= {TaskStatus.ASSIGNED, *final}
        assert all(t.lease_token is None for t in tasks if t.status is TaskStatus.ASSIGNED)
        assert check.ok
