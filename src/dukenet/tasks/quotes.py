"""Binding quotes: ``POST /tasks/quote`` stores what it offered (agent, price, expiry), and a
task bought with its ``quote_id`` gets that agent at no more than that price, or 409.

A quote is bound to its buyer and to the request it priced (description and complexity: a
quote for a complexity-1 task cannot buy a complexity-10 one), is valid for
``DUKENET_QUOTE_TTL_S`` seconds (600 by default), and buys one task. Redeeming it fails with
409 when it expired, was already used, its agent was disabled since, or the agent's price for
this task went up since (a new ``base_price_sat``, a higher reputation tier); a lower current
price is what the buyer pays.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.accounts.models import User
from dukenet.agents.models import Agent
from dukenet.errors import Conflict, NotFound
from dukenet.kit.orm import Base, IdMixin, TimestampMixin, utcnow


class TaskQuote(IdMixin, TimestampMixin, Base):
    """A price offered to a buyer for one task: ``price_sat`` for ``agent_id`` until
    ``expires_at``; ``task_id``/``used_at`` once a task bought it."""

    __tablename__ = "task_quote"

    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"), index=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agent.id"))
    price_sat: Mapped[int] = mapped_column(BigInteger)
    complexity: Mapped[int] = mapped_column(Integer)
    # SHA-256 (hex) of the quoted description and complexity
    request_sha256: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    task_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("task.id"), default=None)


def request_digest(description: str, complexity: int) -> str:
    """Return the hex SHA-256 a quote binds: the description and the complexity."""
    return hashlib.sha256(f"{complexity}\x00{description}".encode()).hexdigest()


async def issue(
    session: AsyncSession,
    *,
    buyer: User,
    agent: Agent,
    price_sat: int,
    description: str,
    complexity: int,
    ttl_s: float,
) -> TaskQuote:
    """Store a quote of ``price_sat`` for ``agent``, valid ``ttl_s`` seconds (flushes only)."""
    quote = TaskQuote(
        id=uuid.uuid4(),
        buyer_id=buyer.id,
        agent_id=agent.id,
        price_sat=price_sat,
        complexity=complexity,
        request_sha256=request_digest(description, complexity),
        expires_at=utcnow() + timedelta(seconds=ttl_s),
    )
    session.add(quote)
    await session.flush()
    return quote


async def redeem(
    session: AsyncSession, *, buyer: User, quote_id: uuid.UUID, description: str, complexity: int
) -> TaskQuote:
    """Lock the buyer's quote for a task being created and mark it used (flushes only; the
    task's transaction commits both). Check the price with :func:`check_price` once routed.

    Raises:
        NotFound: no such quote of this buyer.
        Conflict: used already, expired, quoted for another description or complexity, or its
            agent is disabled (or gone).
    """
    stmt = select(TaskQuote).where(TaskQuote.id == quote_id).with_for_update()
    quote = (await session.execute(stmt)).scalar_one_or_none()
    if quote is None or quote.buyer_id != buyer.id:
        raise NotFound(f"quote {quote_id} not found")
    if quote.used_at is not None:
        raise Conflict(f"quote {quote_id} was already used (task {quote.task_id})")
    now = utcnow()
    if quote.expires_at <= now:
        raise Conflict(f"quote {quote_id} expired at {quote.expires_at.isoformat()}; ask again")
    if quote.request_sha256 != request_digest(description, complexity):
        raise Conflict(f"quote {quote_id} was for another description or complexity")
    agent = await session.get(Agent, quote.agent_id)
    if agent is None or not agent.is_enabled:
        raise Conflict(f"quote {quote_id}: the quoted agent is no longer available")
    quote.used_at = now
    await session.flush()
    return quote


def check_price(quote: TaskQuote, price_sat: int) -> None:
    """Accept the routed price of the quoted agent: at most the quoted one.

    Raises:
        Conflict: the agent's price went up since the quote.
    """
    if price_sat > quote.price_sat:
        raise Conflict(
            f"quote {quote.id}: the agent's price rose from {quote.price_sat} to {price_sat} sat"
        )
