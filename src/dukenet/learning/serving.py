"""Serving: per-process caches of the routers the ``champion`` and ``challenger`` aliases name."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.learning import repository
from dukenet.learning.router import DukeRouter
from dukenet.learning.service import CHALLENGER, CHAMPION, load_router


class AliasCache:
    """Holds the router an alias points at; reloads when the alias moves (checked on every call).

    One instance per alias and process, built in the app's lifespan; safe for concurrent
    coroutines.
    """

    def __init__(self, alias: str = CHAMPION) -> None:
        self.alias = alias
        self._version: int | None = None
        self._router: DukeRouter | None = None
        self._lock = asyncio.Lock()

    async def current(self, session: AsyncSession) -> tuple[int | None, DukeRouter | None]:
        """Return ``(version, router)`` of the alias, or ``(None, None)`` while it is unset."""
        alias = await repository.get_alias(session, self.alias)
        return await self.at(session, alias.version if alias is not None else None)

    async def at(
        self, session: AsyncSession, version: int | None
    ) -> tuple[int | None, DukeRouter | None]:
        """Return ``(version, router)`` for the version the alias was just read to point at
        (None: unset), loading the artifact only when the version moved."""
        if version is None:
            return None, None
        if version != self._version:
            async with self._lock:
                if version != self._version:
                    row = await repository.get_version(session, version)
                    if row is None:
                        return None, None
                    # the local file, or the bytes from the database (another machine's)
                    router = await load_router(session, row)
                    self._version, self._router = version, router
        return self._version, self._router


Routed = tuple[int | None, DukeRouter | None]


class ChampionCache(AliasCache):
    """The champion's router (what routes live tasks), plus the challenger's for shadow mode."""

    def __init__(self) -> None:
        super().__init__(CHAMPION)
        self.challenger = AliasCache(CHALLENGER)

    async def both(self, session: AsyncSession, *, challenger: bool) -> tuple[Routed, Routed]:
        """Return ``(version, router)`` of the champion and, if ``challenger``, of the
        challenger (else ``(None, None)``), reading both aliases in one query."""
        if not challenger:
            return await self.current(session), (None, None)
        versions = await repository.alias_versions(session, [self.alias, self.challenger.alias])
        return (
            await self.at(session, versions.get(self.alias)),
            await self.challenger.at(session, versions.get(self.challenger.alias)),
        )
