"""SQL of the monitoring domain: marketplace-wide counts read across the domains' tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User
from dukenet.agents.models import Agent
from dukenet.learning.models import (
    NOT_ROUTER_TRIGGERS,
    ModelVersion,
    Outcome,
    TrainingRun,
    TrainingRunStatus,
)
from dukenet.ledger.models import (
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    LedgerTransactionKind,
)
from dukenet.tasks.models import Task, TaskStatus


async def users_by_role(session: AsyncSession) -> dict[str, int]:
    """Return the number of users per role (roles without users are absent)."""
    stmt = select(User.role, func.count(User.id)).group_by(User.role)
    return {str(role.value): int(n) for role, n in (await session.execute(stmt)).all()}


async def count_enabled_agents(session: AsyncSession) -> int:
    """Return the number of agents on the market (enabled)."""
    stmt = select(func.count(Agent.id)).where(Agent.is_enabled.is_(True))
    return int((await session.execute(stmt)).scalar_one())


async def outcome_totals(session: AsyncSession, *, success_threshold: float) -> tuple[int, int]:
    """Return (outcomes, successful outcomes) over every recorded outcome; a success is
    ``Outcome.succeeded(success_threshold)``, as reputation and the learning loop count it."""
    succeeded = Outcome.succeeded(success_threshold)
    stmt = select(func.count(Outcome.id), func.coalesce(func.sum(func.cast(succeeded, Integer)), 0))
    total, successes = (await session.execute(stmt)).one()
    return int(total), int(successes)


async def released_sat(session: AsyncSession) -> int:
    """Return the satoshis paid out of escrow (the credits of every ``escrow_release``
    transaction: agents' earnings plus platform fees); refunds are not counted."""
    stmt = (
        select(func.coalesce(func.sum(LedgerEntry.amount_sat), 0))
        .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(
            LedgerTransaction.kind == LedgerTransactionKind.ESCROW_RELEASE,
            LedgerEntry.amount_sat > 0,
        )
    )
    return int((await session.execute(stmt)).scalar_one())


async def outcomes_seen_by(session: AsyncSession, version: int) -> int | None:
    """Return how many outcomes model ``version`` was trained on, or None if no such version."""
    stmt = select(ModelVersion.outcomes_seen).where(ModelVersion.version == version)
    seen = (await session.execute(stmt)).scalar_one_or_none()
    return None if seen is None else int(seen)


async def moved_sat_by_kind(session: AsyncSession) -> dict[str, int]:
    """Return, per ledger transaction kind, the satoshis moved (the sum of its credits)."""
    stmt = (
        select(LedgerTransaction.kind, func.coalesce(func.sum(LedgerEntry.amount_sat), 0))
        .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerEntry.amount_sat > 0)
        .group_by(LedgerTransaction.kind)
    )
    return {str(kind.value): int(n) for kind, n in (await session.execute(stmt)).all()}


async def training_runs_by_status(session: AsyncSession) -> dict[str, int]:
    """Return the number of the router's training runs per status, every status present (0
    without runs); hyperparameter studies and fine-tunes are excluded."""
    stmt = (
        select(TrainingRun.status, func.count(TrainingRun.id))
        .where(TrainingRun.trigger.not_in(NOT_ROUTER_TRIGGERS))
        .group_by(TrainingRun.status)
    )
    counts = {str(status.value): 0 for status in TrainingRunStatus}
    counts.update({str(s.value): int(n) for s, n in (await session.execute(stmt)).all()})
    return counts


async def training_failures_since_success(session: AsyncSession) -> tuple[int, datetime | None]:
    """Return (failed training runs started after the newest successful one, when that
    successful run finished); hyperparameter studies and fine-tunes are not counted."""
    trains = TrainingRun.trigger.not_in(NOT_ROUTER_TRIGGERS)
    last_success = (
        await session.execute(
            select(func.max(TrainingRun.started_at), func.max(TrainingRun.finished_at)).where(
                trains, TrainingRun.status == TrainingRunStatus.SUCCEEDED
            )
        )
    ).one()
    failed = select(func.count(TrainingRun.id)).where(
        trains, TrainingRun.status == TrainingRunStatus.FAILED
    )
    if last_success[0] is not None:
        failed = failed.where(TrainingRun.started_at > last_success[0])
    return int((await session.execute(failed)).scalar_one()), last_success[1]


async def oldest_claimable_by_kind(session: AsyncSession, now: datetime) -> dict[str, datetime]:
    """Return, per agent kind, when the longest-waiting assigned task became claimable (its
    creation, or the end of its last retry backoff); tasks still in backoff are not counted."""
    since = func.coalesce(Task.available_at, Task.created_at)
    stmt = (
        select(Agent.kind, func.min(since))
        .join(Agent, Task.agent_id == Agent.id)
        .where(Task.status == TaskStatus.ASSIGNED, since <= now)
        .group_by(Agent.kind)
    )
    return {str(kind.value): at for kind, at in (await session.execute(stmt)).all()}


async def leases_by_kind(session: AsyncSession, now: datetime) -> dict[str, tuple[int, datetime]]:
    """Return, per agent kind with executing tasks, (leases expired before ``now``, the
    earliest lease expiry): the stalest lease, whose runner heartbeated longest ago."""
    expired = func.sum(func.cast(Task.lease_expires_at < now, Integer))
    stmt = (
        select(Agent.kind, func.coalesce(expired, 0), func.min(Task.lease_expires_at))
        .join(Agent, Task.agent_id == Agent.id)
        .where(Task.status == TaskStatus.EXECUTING, Task.lease_expires_at.is_not(None))
        .group_by(Agent.kind)
    )
    return {
        str(kind.value): (int(n), earliest)
        for kind, n, earliest in (await session.execute(stmt)).all()
    }


async def ledger_discrepancies(session: AsyncSession) -> tuple[int, int]:
    """Return (accounts whose cached balance differs from the sum of their entries, transactions
    whose entries do not sum to zero): ``ledger.service.check``'s verdict computed in the
    database, two aggregate queries instead of every account loaded (a full scan of the
    entries all the same)."""
    sums = (
        select(LedgerEntry.account_id, func.sum(LedgerEntry.amount_sat).label("entries_sat"))
        .group_by(LedgerEntry.account_id)
        .subquery()
    )
    accounts = (
        select(func.count())
        .select_from(LedgerAccount)
        .outerjoin(sums, sums.c.account_id == LedgerAccount.id)
        .where(LedgerAccount.balance_sat != func.coalesce(sums.c.entries_sat, 0))
    )
    unbalanced = (
        select(LedgerEntry.transaction_id)
        .group_by(LedgerEntry.transaction_id)
        .having(func.sum(LedgerEntry.amount_sat) != 0)
        .subquery()
    )
    off = int((await session.execute(accounts)).scalar_one())
    bad = int((await session.execute(select(func.count()).select_from(unbalanced))).scalar_one())
    return off, bad
