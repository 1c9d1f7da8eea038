"""The sweeper: returns expired leases to the queue, settles delivered tasks whose dispute
window has passed, refunds tasks nobody claimed before the claim deadline, and offers tasks
nobody claimed in time to another agent. Every database runner sweeps before it claims, and the
API server sweeps on its own so settlement happens even where only remote (HTTP) runners work.
Sweeps are safe to run in any number of processes at once: each locks its rows with SKIP LOCKED
and every settlement has one idempotency key."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import NamedTuple

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.config import Settings
from dukenet.db import in_transaction
from dukenet.tasks import service as tasks_service

log = structlog.get_logger(__name__)


class SweepReport(NamedTuple):
    """What one sweep did: leases expired, delivered tasks settled, unclaimed tasks moved, and
    tasks refunded because nobody claimed them before the claim deadline."""

    expired_leases: int
    settled: int
    reassigned: int
    refunded_unclaimed: int


class Sweeper:
    """Runs ``expire_leases``, ``settle_due``, ``expire_unclaimed`` and ``reassign_unclaimed``."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._next = 0.0  # monotonic time of the next sweep for ``sweep_if_due``

    async def sweep(self) -> SweepReport:
        """Sweep once, each step in its own transaction."""
        expired = await in_transaction(
            self._sessionmaker,
            lambda session: tasks_service.expire_leases(session, settings=self._settings),
        )
        settled = await in_transaction(
            self._sessionmaker,
            lambda session: tasks_service.settle_due(session, settings=self._settings),
        )
        # Before reassignment: a task past its deadline is refunded, not offered once more.
        refunded = await in_transaction(
            self._sessionmaker,
            lambda session: tasks_service.expire_unclaimed(session, settings=self._settings),
        )
        reassigned = await in_transaction(
            self._sessionmaker,
            lambda session: tasks_service.reassign_unclaimed(session, settings=self._settings),
        )
        report = SweepReport(expired, settled, reassigned, refunded)
        if any(report):
            log.info("swept", **report._asdict())
        return report

    async def sweep_if_due(self, interval_s: float) -> None:
        """Sweep unless the last sweep of this sweeper was less than ``interval_s`` ago."""
        if time.monotonic() >= self._next:
            await self.sweep()
            self._next = time.monotonic() + interval_s

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Sweep every ``sweep_interval_s`` seconds until ``stop`` is set; errors are logged."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._settings.sweep_interval_s)
