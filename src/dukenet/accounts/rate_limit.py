"""Rate limits on login attempts, per email and per client IP, and on registrations per client
IP (the ``limits`` library).

Storage is in process memory by default and Redis when ``DUKENET_REDIS_URL`` is set, so that
several API processes share the counts. Windows are moving (no burst at a window's edge). Emails
are hashed before they become storage keys, so Redis holds no addresses.
"""

from __future__ import annotations

import hashlib
import math
import time

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool

from dukenet.config import Settings
from dukenet.errors import DukenetError

log = structlog.get_logger(__name__)

REDIS_TIMEOUT_S = 1.0


class RateLimited(DukenetError):
    """Too many attempts (429); retry after ``retry_after_s`` seconds."""

    status_code = 429

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class LoginRateLimiter:
    """Counts login attempts per email and per client IP in a moving window.

    Every attempt counts, successful or not, so a password cannot be guessed faster than the
    per-email limit from any number of addresses. When the storage fails (Redis down) the
    attempt is let through and a warning logged: logins stay available, unthrottled.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        per_email: RateLimitItem,
        per_ip: RateLimitItem,
        registrations_per_ip: RateLimitItem | None = None,
        pool: ConnectionPool | None = None,
    ) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self.per_email = per_email
        self.per_ip = per_ip
        self.registrations_per_ip = registrations_per_ip
        self._pool = pool

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginRateLimiter:
        """Build the limiter of ``settings``: Redis at ``redis_url`` if set, else memory.

        Raises:
            ValueError: a limit is not a ``limits`` string such as ``"10/minute"``.
        """
        per_email = parse(settings.login_rate_limit_per_email)
        per_ip = parse(settings.login_rate_limit_per_ip)
        registrations = parse(settings.register_rate_limit_per_ip)
        if not settings.redis_url:
            return cls(
                MemoryStorage(),
                per_email=per_email,
                per_ip=per_ip,
                registrations_per_ip=registrations,
            )
        pool = ConnectionPool.from_url(
            settings.redis_url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
        )
        storage = RedisStorage(
            "async+" + settings.redis_url,
            implementation="redispy",
            key_prefix=settings.rate_limit_key_prefix,
            wrap_exceptions=True,
            connection_pool=pool,  # type: ignore[arg-type]
        )
        return cls(
            storage,
            per_email=per_email,
            per_ip=per_ip,
            registrations_per_ip=registrations,
            pool=pool,
        )

    async def hit(self, *, email: str, ip: str) -> None:
        """Count one login attempt for ``email`` from ``ip``.

        Raises:
            RateLimited: either limit is exhausted (the attempt is not counted against email).
        """
        email_key = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        await self._hit(
            "login attempts",
            (self.per_ip, ("login", "ip", ip)),
            (self.per_email, ("login", "email", email_key)),
        )

    async def hit_registration(self, *, ip: str) -> None:
        """Count one registration from ``ip`` (each costs a password hash, ~0.3 s of CPU).

        Raises:
            RateLimited: ``registrations_per_ip`` is exhausted.
        """
        if self.registrations_per_ip is not None:
            await self._hit("registrations", (self.registrations_per_ip, ("register", "ip", ip)))

    async def _hit(self, what: str, *checks: tuple[RateLimitItem, tuple[str, ...]]) -> None:
        for item, identifiers in checks:
            try:
                if await self._limiter.hit(item, *identifiers):
                    continue
                stats = await self._limiter.get_window_stats(item, *identifiers)
            except StorageError as exc:
                log.warning("rate limit storage failed; allowing", error=str(exc.storage_error))
                return
            retry_after_s = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(
                f"too many {what}; retry in {retry_after_s} s",
                retry_after_s=retry_after_s,
            )

    async def close(self) -> None:
        """Release the storage's connections (if any)."""
        if self._pool is not None:
            await self._pool.aclose()
