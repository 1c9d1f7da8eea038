"""The runner loop shared by in-process and stand-alone runners: expire leases, claim, execute
with heartbeats, submit once, or release for a retry."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.agents.models import Agent, AgentKind
from dukenet.config import Settings
from dukenet.db import in_transaction
from dukenet.events.stream import DeltaRelay
from dukenet.files import service as files_service
from dukenet.files.storage import Storage
from dukenet.kit.bell import TaskBell
from dukenet.runners.base import (
    Execution,
    ExecutionError,
    Executor,
    SelectiveExecutor,
    WorkItem,
)
from dukenet.tasks import service as tasks_service
from dukenet.tasks.models import Task
from dukenet.tasks.schemas import ResultSubmit
from dukenet.tasks.sweeper import Sweeper

log = structlog.get_logger(__name__)


class Runner:
    """Pulls work for every enabled agent whose kind has an executor, straight from the database
    (the order book); any number of runners may share one database."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        executors: Mapping[AgentKind, Executor],
        *,
        name: str | None = None,
        storage: Storage | None = None,
        bell: TaskBell | None = None,
        relay: DeltaRelay | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._relay = relay  # a streaming chat task's answer is relayed here as it comes
        self._bell = bell  # rung for new work; this runner rings it when a task changes
        self._storage = storage
        self._settings = settings
        self._executors = executors
        self.name = name or f"runner-{uuid.uuid4().hex[:8]}"
        self._sweeper = Sweeper(sessionmaker, settings)

    async def run_once(self) -> bool:
        """Claim and finish at most one task; return True if it did.

        The sweeper (expired leases, settlements due) runs first, at most every
        ``min(lease_s / 4, sweep_interval_s)`` seconds.
        """
        await self._sweeper.sweep_if_due(
            min(self._settings.lease_s / 4, self._settings.sweep_interval_s)
        )
        claimed = await in_transaction(self._sessionmaker, self._claim)
        if claimed is None:
            return False
        task, agent, context = claimed
        assert task.lease_token is not None
        task_id, token, attempt, agent_ids = task.id, task.lease_token, task.attempts, [agent.id]
        heartbeat = asyncio.create_task(self._heartbeat(task_id, token, agent_ids))
        try:
            execution: Execution = await self._executors[agent.kind].execute(
                agent,
                WorkItem(
                    task.description,
                    task.complexity,
                    context,
                    task.payload,
                    external_id=task.external_id,
                    deltas=(
                        self._relay.sink(task_id, attempt)
                        if self._relay is not None and (task.payload or {}).get("stream")
                        else None
                    ),
                ),
            )
        except ExecutionError as exc:
            await self._release(task_id, token, agent_ids, str(exc))
            self._ring(task_id)
            return True
        except Exception as exc:
            log.exception("executor crashed", task_id=str(task_id), agent=agent.name)
            await self._release(task_id, token, agent_ids, f"{type(exc).__name__}: {exc}")
            self._ring(task_id)
            return True
        finally:
            heartbeat.cancel()
            # A lost lease shows up on submit; the heartbeat's own error adds nothing.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await heartbeat
        submission = ResultSubmit(
            lease_token=token,
            idempotency_key=f"{task_id}:{attempt}",
            text=execution.text,
            success=execution.success,
            confidence=execution.confidence,
            latency_ms=execution.latency_ms,
            cost_usd=execution.cost_usd,
            metadata=execution.metadata,
        )
        # The idempotency key makes a retried submission safe: it settles at most once.
        await in_transaction(
            self._sessionmaker,
            lambda session: tasks_service.submit_result(
                session,
                settings=self._settings,
                task_id=task_id,
                agent_ids=agent_ids,
                data=submission,
            ),
        )
        self._ring(task_id)
        return True

    def _ring(self, task_id: uuid.UUID) -> None:
        if self._bell is not None:
            self._bell.changed(task_id)
            self._bell.new_work()  # a released task may be claimable again

    async def _claim(self, session: AsyncSession) -> tuple[Task, Agent, str] | None:
        agents = [
            agent
            for agent in await tasks_service.executable_agents(session, kinds=list(self._executors))
            if _handles(self._executors[agent.kind], agent)
        ]
        task = await tasks_service.claim(
            session,
            agent_ids=[a.id for a in agents],
            runner=self.name,
            lease_s=self._settings.lease_s,
        )
        if task is None:
            return None
        agent = next(a for a in agents if a.id == task.agent_id)
        context = ""
        if self._storage is not None:
            context = await files_service.task_context(
                session,
                self._storage,
                task_id=task.id,
                budget_chars=self._settings.file_context_chars,
            )
        return task, agent, context

    async def _heartbeat(
        self, task_id: uuid.UUID, token: uuid.UUID, agent_ids: list[uuid.UUID]
    ) -> None:
        interval = self._settings.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            async with self._sessionmaker() as session:
                await tasks_service.heartbeat(
                    session,
                    task_id=task_id,
                    lease_token=token,
                    agent_ids=agent_ids,
                    lease_s=self._settings.lease_s,
                )
                await session.commit()

    async def _release(
        self, task_id: uuid.UUID, token: uuid.UUID, agent_ids: list[uuid.UUID], error: str
    ) -> None:
        await in_transaction(
            self._sessionmaker,
            lambda session: tasks_service.release(
                session,
                settings=self._settings,
                task_id=task_id,
                lease_token=token,
                agent_ids=agent_ids,
                error=error,
            ),
        )

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, sleeping ``runner_poll_s`` when idle; errors are logged."""
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("runner iteration failed", runner=self.name)
                busy = False
            if not busy and self._bell is not None:
                await self._bell.wait_for_work(self._settings.runner_poll_s)
            elif not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._settings.runner_poll_s)


def _handles(executor: Executor, agent: Agent) -> bool:
    return not isinstance(executor, SelectiveExecutor) or executor.handles(agent)
