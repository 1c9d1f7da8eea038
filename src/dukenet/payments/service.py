"""Payouts of agents' earnings and deposits through a payment provider.

Every step is one balanced ledger transaction with an idempotency key derived from the payout or
the payment hash, so a repeated step books nothing twice:

- request: ``agent:<agent>`` → ``payout:<payout>`` (``payout_hold``; the amount is held);
- paid: ``payout:<payout>`` → ``wallet:<operator>`` or the provider's external account
  (``payout_settle``);
- rejected, or the payment failed: ``payout:<payout>`` → ``agent:<agent>`` (``payout_return``,
  reversing the hold);
- deposit paid: the provider's external account → ``wallet:<user>`` (``deposit``, keyed by the
  payment hash).

Functions flush and never commit, except ``send`` callers and ``sync``, which must commit a
payout's ``sending`` state before the provider is asked to pay (see ``approve``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.accounts.models import User, UserRole
from dukenet.agents import repository as agents_repository
from dukenet.errors import BadRequest, Conflict, NotFound
from dukenet.kit.orm import utcnow
from dukenet.ledger import repository as ledger_repository
from dukenet.ledger import service as ledger_service
from dukenet.ledger.models import LedgerAccountKind, LedgerTransactionKind
from dukenet.payments import repository
from dukenet.payments.errors import ProviderError
from dukenet.payments.models import (
    Deposit,
    DepositStatus,
    Payout,
    PayoutDestination,
    PayoutStatus,
)
from dukenet.payments.providers import PaymentProvider, PaymentState
from dukenet.payments.schemas import (
    AgentBalanceRead,
    DepositCreate,
    PayoutBalancesRead,
    PayoutCreate,
)


def payout_account_name(payout_id: uuid.UUID) -> str:
    """Return the ledger account name holding one payout's amount until it is paid."""
    return f"payout:{payout_id}"


async def balances(session: AsyncSession, *, user: User) -> PayoutBalancesRead:
    """Return the earned balance (sat) of each of the user's agents, what their open payouts
    hold, and the totals."""
    agents = await agents_repository.list_all(session, owner_id=user.id)
    pending = await repository.open_payout_sums(session, [a.id for a in agents])
    rows = [
        AgentBalanceRead(
            agent_id=agent.id,
            name=agent.name,
            balance_sat=await ledger_service.balance(session, ledger_service.agent_name(agent.id)),
            pending_sat=pending.get(agent.id, 0),
        )
        for agent in agents
    ]
    return PayoutBalancesRead(
        agents=rows,
        total_sat=sum(r.balance_sat for r in rows),
        pending_sat=sum(r.pending_sat for r in rows),
    )


async def request_payout(
    session: AsyncSession, *, provider: PaymentProvider, user: User, data: PayoutCreate
) -> tuple[Payout, bool]:
    """Hold an amount of the user's agent's earnings for a payout; return (payout, created).

    The agent's account is locked while its balance is checked, so racing requests cannot
    overdraw it. A repeated ``idempotency_key`` returns the user's first payout (created False).

    Raises:
        NotFound: the agent does not exist or is not the user's.
        BadRequest: the destination is not payable, or ``amount_sat`` differs from the
            invoice's amount.
        Conflict: the balance does not cover the amount (or is zero), or the invoice is
            already being paid.
        ProviderError: the provider could not check the destination.
    """
    if data.idempotency_key is not None:
        existing = await repository.get_payout_by_key(session, user.id, data.idempotency_key)
        if existing is not None:
            return existing, False
    agent = await agents_repository.get(session, data.agent_id)
    if agent is None or agent.owner_id != user.id:
        raise NotFound(f"agent {data.agent_id} not found among your agents")
    amount = data.amount_sat
    payment_hash: str | None = None
    if data.destination is PayoutDestination.EXTERNAL:
        assert data.destination_ref is not None
        target = await provider.check_destination(data.destination_ref)
        payment_hash = target.payment_hash
        if target.amount_sat is not None:
            if amount is not None and amount != target.amount_sat:
                raise BadRequest(
                    f"amount_sat: {amount} sat differs from the invoice's {target.amount_sat} sat"
                )
            amount = target.amount_sat
    account_name = ledger_service.agent_name(agent.id)
    account = await ledger_repository.get_account_by_name(session, account_name, for_update=True)
    # Requests for this agent queue on the lock above; re-check the key behind it.
    if data.idempotency_key is not None:
        existing = await repository.get_payout_by_key(session, user.id, data.idempotency_key)
        if existing is not None:
            return existing, False
    available = account.balance_sat if account is not None else 0
    if amount is None:
        amount = available
    if amount <= 0:
        raise Conflict(f"agent {agent.name} has no earnings to pay out")
    if amount > available:
        raise Conflict(
            f"agent {agent.name} has {available} sat to pay out; {amount} sat were requested"
        )
    if payment_hash is not None:
        live = await repository.live_payout_for_hash(session, payment_hash)
        if live is not None:
            raise Conflict(f"this invoice is already paid or being paid by payout {live.id}")
    payout = Payout(
        id=uuid.uuid4(),
        agent_id=agent.id,
        requested_by_id=user.id,
        amount_sat=amount,
        destination=data.destination,
        destination_ref=data.destination_ref,
        provider=provider.name,
        payment_hash=payment_hash,
        status=PayoutStatus.REQUESTED,
        idempotency_key=data.idempotency_key,
    )
    session.add(payout)
    await session.flush()
    hold = payout_account_name(payout.id)
    await ledger_service.open_account(
        session, hold, LedgerAccountKind.PAYOUT, owner_id=user.id, is_new=True
    )
    await ledger_service.transfer(
        session,
        kind=LedgerTransactionKind.PAYOUT_HOLD,
        debit=account_name,
        credit=hold,
        amount_sat=amount,
        idempotency_key=f"payout:{payout.id}:hold",
        memo=f"payout {payout.id} requested",
    )
    return payout, True


async def get_visible_payout(session: AsyncSession, *, user: User, payout_id: uuid.UUID) -> Payout:
    """Return a payout the user requested (admins: any payout).

    Raises:
        NotFound: no such payout visible to the user.
    """
    payout = await repository.get_payout(session, payout_id)
    if payout is None or (user.role is not UserRole.ADMIN and payout.requested_by_id != user.id):
        raise NotFound(f"payout {payout_id} not found")
    return payout


async def list_payouts(
    session: AsyncSession,
    *,
    requested_by_id: uuid.UUID | None,
    status: PayoutStatus | None = None,
    agent_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[Payout], int]:
    """Return a page of payouts, newest first, and the total (everyone's if
    ``requested_by_id`` is None)."""
    return await repository.list_payouts(
        session,
        requested_by_id=requested_by_id,
        status=status,
        agent_id=agent_id,
        limit=limit,
        offset=offset,
    )


async def _locked(session: AsyncSession, payout_id: uuid.UUID) -> Payout:
    payout = await repository.get_payout(session, payout_id, for_update=True)
    if payout is None:
        raise NotFound(f"payout {payout_id} not found")
    return payout


async def _settle(session: AsyncSession, payout: Payout, provider: PaymentProvider) -> None:
    if payout.destination is PayoutDestination.WALLET:
        target = ledger_service.wallet_name(payout.requested_by_id)
        await ledger_service.open_account(
            session, target, LedgerAccountKind.WALLET, payout.requested_by_id
        )
    else:
        target = provider.external_account
        await ledger_service.open_account(session, target, LedgerAccountKind.EXTERNAL)
    await ledger_service.transfer(
        session,
        kind=LedgerTransactionKind.PAYOUT_SETTLE,
        debit=payout_account_name(payout.id),
        credit=target,
        amount_sat=payout.amount_sat,
        idempotency_key=f"payout:{payout.id}:settle",
        memo=f"payout {payout.id} paid",
    )
    payout.status = PayoutStatus.PAID
    payout.finished_at = utcnow()


async def _give_back(
    session: AsyncSession, payout: Payout, status: PayoutStatus, reason: str
) -> None:
    await ledger_service.transfer(
        session,
        kind=LedgerTransactionKind.PAYOUT_RETURN,
        debit=payout_account_name(payout.id),
        credit=ledger_service.agent_name(payout.agent_id),
        amount_sat=payout.amount_sat,
        idempotency_key=f"payout:{payout.id}:return",
        memo=f"payout {payout.id} {status.value}",
    )
    payout.status = status
    payout.reason = reason
    payout.finished_at = utcnow()


async def approve(
    session: AsyncSession, *, provider: PaymentProvider, admin: User, payout_id: uuid.UUID
) -> tuple[Payout, bool]:
    """Approve a requested payout; return (payout, changed).

    A payout to the operator's wallet is paid here. An external one becomes ``sending``: the
    caller commits that, then calls ``send`` (the provider is never asked to pay before the
    state that says so is durable). Approving a ``sending`` or ``paid`` payout again changes
    nothing (``send`` resumes a sending one).

    Raises:
        NotFound: no such payout.
        Conflict: the payout was rejected or failed, or belongs to another provider.
    """
    payout = await _locked(session, payout_id)
    if payout.status in (PayoutStatus.SENDING, PayoutStatus.PAID):
        return payout, False
    if payout.status is not PayoutStatus.REQUESTED:
        raise Conflict(f"payout {payout_id} is {payout.status.value}; it cannot be approved")
    if payout.destination is PayoutDestination.EXTERNAL and payout.provider != provider.name:
        raise Conflict(
            f"payout {payout_id} was requested through the {payout.provider} provider; "
            f"this server pays through {provider.name}"
        )
    payout.status = PayoutStatus.SENDING
    payout.decided_by_id = admin.id
    payout.decided_at = utcnow()
    if payout.destination is PayoutDestination.WALLET:
        await _settle(session, payout, provider)
    await session.flush()
    return payout, True


async def send(session: AsyncSession, *, provider: PaymentProvider, payout_id: uuid.UUID) -> Payout:
    """Pay a ``sending`` payout through the provider and book the outcome; the caller commits.

    The payout stays row-locked during the provider's call, so two callers never pay it twice.
    A payment the provider already knows is not sent again: paid → ``paid``; failed → the hold
    returns to the agent (``failed``); in flight → stays ``sending`` (ask again later). A payout
    in another state is returned as it is.

    Raises:
        NotFound: no such payout.
        ProviderError: the provider could not say what became of an earlier attempt.
    """
    payout = await _locked(session, payout_id)
    if payout.status is not PayoutStatus.SENDING:
        return payout
    assert payout.destination_ref is not None
    state = (
        await provider.payment_state(payout.payment_hash)
        if payout.payment_hash is not None
        else PaymentState.UNKNOWN
    )
    message = ""
    if state is PaymentState.UNKNOWN:
        outcome = await provider.pay(
            destination_ref=payout.destination_ref, amount_sat=payout.amount_sat
        )
        state, message = outcome.state, outcome.message
        if state is PaymentState.FAILED and payout.payment_hash is not None:
            # Never return money on a payment that went through after all.
            try:
                if await provider.payment_state(payout.payment_hash) is PaymentState.SUCCEEDED:
                    state = PaymentState.SUCCEEDED
            except ProviderError:
                state = PaymentState.PENDING
    if state is PaymentState.SUCCEEDED:
        await _settle(session, payout, provider)
    elif state is PaymentState.FAILED:
        await _give_back(
            session, payout, PayoutStatus.FAILED, f"payment failed: {message or 'by the provider'}"
        )
    elif message:
        payout.reason = f"payment pending: {message}"
    await session.flush()
    return payout


async def reject(
    session: AsyncSession, *, admin: User, payout_id: uuid.UUID, reason: str
) -> tuple[Payout, bool]:
    """Reject a requested payout: the held amount returns to the agent; return (payout,
    changed). Rejecting a rejected payout again changes nothing.

    Raises:
        NotFound: no such payout.
        Conflict: the payout is being sent, paid or failed.
    """
    payout = await _locked(session, payout_id)
    if payout.status is PayoutStatus.REJECTED:
        return payout, False
    if payout.status is not PayoutStatus.REQUESTED:
        raise Conflict(f"payout {payout_id} is {payout.status.value}; it cannot be rejected")
    payout.decided_by_id = admin.id
    payout.decided_at = utcnow()
    await _give_back(session, payout, PayoutStatus.REJECTED, reason)
    await session.flush()
    return payout, True


async def create_deposit(
    session: AsyncSession, *, provider: PaymentProvider, user: User, data: DepositCreate
) -> tuple[Deposit, bool]:
    """Create an invoice for a deposit into the user's wallet; return (deposit, created).

    A repeated ``idempotency_key`` returns the user's first deposit (created False).

    Raises:
        Conflict: the provider takes no deposits (ledger-only: an admin credits wallets).
        ProviderError: the provider failed.
    """
    if data.idempotency_key is not None:
        existing = await repository.get_deposit_by_key(session, user.id, data.idempotency_key)
        if existing is not None:
            return existing, False
    invoice = await provider.create_invoice(
        amount_sat=data.amount_sat, memo=data.memo or "DukeNET deposit"
    )
    deposit = Deposit(
        user_id=user.id,
        amount_sat=invoice.amount_sat,
        memo=data.memo,
        provider=provider.name,
        payment_hash=invoice.payment_hash,
        payment_request=invoice.payment_request,
        status=DepositStatus.PENDING,
        idempotency_key=data.idempotency_key,
    )
    session.add(deposit)
    await session.flush()
    return deposit, True


async def get_visible_deposit(
    session: AsyncSession, *, user: User, deposit_id: uuid.UUID
) -> Deposit:
    """Return a deposit of the user (admins: any deposit).

    Raises:
        NotFound: no such deposit visible to the user.
    """
    deposit = await repository.get_deposit(session, deposit_id)
    if deposit is None or (user.role is not UserRole.ADMIN and deposit.user_id != user.id):
        raise NotFound(f"deposit {deposit_id} not found")
    return deposit


async def refresh_deposit(
    session: AsyncSession, *, provider: PaymentProvider, deposit_id: uuid.UUID
) -> Deposit:
    """Ask the provider whether a pending deposit's invoice is paid and credit the wallet once
    (the ledger transaction is keyed by the payment hash); an expired invoice becomes
    ``expired``. A deposit no longer pending is returned as it is.

    Raises:
        NotFound: no such deposit.
        Conflict: the deposit belongs to another provider.
        ProviderError: the provider failed.
    """
    deposit = await repository.get_deposit(session, deposit_id)
    if deposit is None:
        raise NotFound(f"deposit {deposit_id} not found")
    if deposit.status is not DepositStatus.PENDING:
        return deposit
    if deposit.provider != provider.name:
        raise Conflict(
            f"deposit {deposit_id} was made through the {deposit.provider} provider; "
            f"this server uses {provider.name}"
        )
    state = await provider.invoice_state(deposit.payment_hash)
    if state not in (PaymentState.SUCCEEDED, PaymentState.FAILED):
        return deposit
    deposit = await repository.get_deposit(session, deposit_id, for_update=True) or deposit
    if deposit.status is not DepositStatus.PENDING:
        return deposit
    if state is PaymentState.SUCCEEDED:
        await ledger_service.open_account(
            session, provider.external_account, LedgerAccountKind.EXTERNAL
        )
        await ledger_service.open_account(
            session,
            ledger_service.wallet_name(deposit.user_id),
            LedgerAccountKind.WALLET,
            deposit.user_id,
        )
        await ledger_service.transfer(
            session,
            kind=LedgerTransactionKind.DEPOSIT,
            debit=provider.external_account,
            credit=ledger_service.wallet_name(deposit.user_id),
            amount_sat=deposit.amount_sat,
            idempotency_key=f"deposit:{deposit.provider}:{deposit.payment_hash}",
            memo=f"deposit {deposit.id}",
        )
        deposit.status = DepositStatus.CREDITED
        deposit.credited_at = utcnow()
    else:
        deposit.status = DepositStatus.EXPIRED
    await session.flush()
    return deposit


async def list_deposits(
    session: AsyncSession,
    *,
    user_id: uuid.UUID | None,
    status: DepositStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[Deposit], int]:
    """Return a page of deposits, newest first, and the total (everyone's if ``user_id`` is
    None)."""
    return await repository.list_deposits(
        session, user_id=user_id, status=status, limit=limit, offset=offset
    )


@dataclass(frozen=True)
class SyncReport:
    """What one ``sync`` pass did: payouts paid, failed or still sending; deposits credited,
    expired or still pending; errors (the provider's messages)."""

    paid: int
    failed: int
    sending: int
    credited: int
    expired: int
    pending: int
    errors: list[str]


async def sync(
    sessionmaker: async_sessionmaker[AsyncSession], *, provider: PaymentProvider
) -> SyncReport:
    """Resolve every sending payout and pending deposit with the provider, one unit of work
    (committed) each: the recovery pass after a crash, and the poll that credits deposits."""
    counts = dict.fromkeys(("paid", "failed", "sending", "credited", "expired", "pending"), 0)
    errors: list[str] = []
    async with sessionmaker() as session:
        payout_ids = await repository.sending_payout_ids(session)
        deposit_ids = await repository.pending_deposit_ids(session)
    for payout_id in payout_ids:
        async with sessionmaker() as session:
            try:
                payout = await send(session, provider=provider, payout_id=payout_id)
                await session.commit()
            except ProviderError as exc:
                errors.append(f"payout {payout_id}: {exc.message}")
                counts["sending"] += 1
                continue
            counts[payout.status.value] = counts.get(payout.status.value, 0) + 1
    for deposit_id in deposit_ids:
        async with sessionmaker() as session:
            try:
                deposit = await refresh_deposit(session, provider=provider, deposit_id=deposit_id)
                await session.commit()
            except (ProviderError, Conflict) as exc:
                errors.append(f"deposit {deposit_id}: {exc.message}")
                counts["pending"] += 1
                continue
            counts[deposit.status.value] = counts.get(deposit.status.value, 0) + 1
    return SyncReport(**counts, errors=errors)
