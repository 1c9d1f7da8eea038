"""The per-process application state built in ``lifespan`` and read by dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field

from pwdlib import PasswordHash
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dukenet.accounts.rate_limit import LoginRateLimiter
from dukenet.accounts.service import TokenCodec
from dukenet.config import Settings
from dukenet.events.stream import DeltaRelay
from dukenet.files.storage import Storage
from dukenet.kit.bell import TaskBell
from dukenet.learning.serving import ChampionCache
from dukenet.monitoring.metrics import Metrics


@dataclass
class AppState:
    """Everything a request may need; one instance per process, nothing global."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    tokens: TokenCodec
    hasher: PasswordHash
    champion: ChampionCache
    metrics: Metrics
    login_limiter: LoginRateLimiter
    storage: Storage
    bell: TaskBell = field(default_factory=TaskBell)  # wakes embedded runners and waiters
    # streamed answers, runner -> the gateway request waiting for them (thread-safe)
    relay: DeltaRelay = field(default_factory=DeltaRelay)
