"""Serving the champion: a per-process cache of the router the ``champion`` alias points at."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.learning import repository
from dukenet.learning.router import DukeRouter
from dukenet.learning.service import CHAMPION


class ChampionCache:
    """Holds the loaded champion router; reloads when the alias moves (checked on every call).

    One instance per process, built in the app's lifespan or by a runner; safe for concurrent
    coroutines.
    """

    def __init__(self) -> None:
        self._version: int | None = None
        self._router: DukeRouter | None = None
        self._lock = asyncio.Lock()

    async def current(self, session: AsyncSession) -> tuple[int | None, DukeRouter | None]:
        """Return ``(version, router)`` of the champion, or ``(None, None)`` before the first."""
        alias = await repository.get_alias(session, CHAMPION)
        if alias is None:
            return None, None
        if alias.version != self._version:
            async with self._lock:
                if alias.version != self._version:
                    row = await repository.get_version(session, alias.version)
                    if row is None:
                        return None, None
                    router = await asyncio.to_thread(DukeRouter.load, Path(row.artifact_path))
                    self._version, self._router = alias.version, router
        return self._version, self._router
