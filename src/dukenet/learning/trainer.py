"""The trainer loop: watch the triggers and train when one fires (in-process or standalone)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.config import Settings
from dukenet.kit.orm import utcnow
from dukenet.learning import service, triggers, tuning

log = structlog.get_logger(__name__)


class Trainer:
    """Checks the retraining triggers every ``trainer_poll_s`` and runs at most one training at
    a time; the fitting itself runs in a worker thread so requests are never blocked."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings

    async def run_once(self) -> service.TrainResult | None:
        """Train if a trigger is due; return what the run produced, or None."""
        async with self._sessionmaker() as session:
            await service.reap_stale_runs(session, timeout_s=self._settings.training_timeout_s)
            due = await triggers.due_trigger(session, self._settings, now=utcnow())
            await session.commit()
        if due is None:
            return None
        log.info("trigger fired", trigger=due.name, key=due.key, reason=due.reason)
        async with self._sessionmaker() as session:
            config = await tuning.training_config(session, seed=self._settings.split_seed)
        result = await service.train(
            self._sessionmaker,
            models_dir=self._settings.models_dir,
            trigger=due.name,
            trigger_key=due.key,
            config=config,
            split_seed=self._settings.split_seed,
            success_window=self._settings.success_drop_window,
            success_threshold=self._settings.success_threshold,
            reference_price_sat=self._settings.reference_price_sat,
            gate=service.promotion_gate(self._settings),
        )
        if result is not None and result.version is not None:
            log.info(
                "trained",
                version=result.version.version,
                outcomes=result.version.outcomes_seen,
                promoted=result.version.promoted,
                auc=result.version.metrics.get("roc_auc"),
            )
        return result

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Poll the triggers until ``stop`` is set; a failed run is logged and retried later."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("training run failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._settings.trainer_poll_s)
