"""``dukenet payouts list|approve|reject|sync`` on the embedded database (SQLite)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from typer.testing import CliRunner

from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import UserRole
from dukenet.agents import service as agents_service
from dukenet.agents.schemas import AgentCreate
from dukenet.cli import app
from dukenet.config import Settings
from dukenet.db import create_engine, create_sessionmaker
from dukenet.ledger import service as ledger_service
from dukenet.ledger.models import LedgerAccountKind, LedgerTransactionKind
from dukenet.payments import service as payments_service
from dukenet.payments.providers import LedgerProvider
from dukenet.payments.schemas import PayoutCreate

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLI at an empty, migrated embedded setup under ``tmp_path``."""
    monkeypatch.setenv("DUKENET_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("DUKENET_DATABASE_URL", raising=False)
    monkeypatch.delenv("DUKENET_PAYMENT_PROVIDER", raising=False)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    return tmp_path


async def _two_payouts() -> tuple[uuid.UUID, list[str]]:
    """An operator's agent that earned 5,000 sat from a buyer's task, and two wallet payout
    requests of 1,000 and 1,500 sat; return (agent id, payout ids)."""
    engine = create_engine(Settings().resolved_database_url)
    hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))
    try:
        async with create_sessionmaker(engine)() as session:
            await ledger_service.ensure_system_accounts(session)
            buyer = await accounts_service.register(
                session, hasher, email="b@example.com", password="x" * 12, role=UserRole.BUYER
            )
            operator = await accounts_service.register(
                session, hasher, email="o@example.com", password="x" * 12, role=UserRole.AGENT
            )
            agent = await agents_service.register(
                session,
                settings=Settings(),
                owner=operator,
                data=AgentCreate(name="answers", kind="human"),
            )
            await ledger_service.deposit(session, user_id=buyer.id, amount_sat=5_000)
            await ledger_service.open_account(
                session, ledger_service.agent_name(agent.id), LedgerAccountKind.AGENT
            )
            await ledger_service.transfer(
                session,
                kind=LedgerTransactionKind.ESCROW_RELEASE,
                debit=ledger_service.wallet_name(buyer.id),
                credit=ledger_service.agent_name(agent.id),
                amount_sat=5_000,
            )
            ids = []
            for amount in (1_000, 1_500):
                payout, _ = await payments_service.request_payout(
                    session,
                    provider=LedgerProvider(),
                    user=operator,
                    data=PayoutCreate(agent_id=agent.id, amount_sat=amount),
                )
                ids.append(str(payout.id))
            await session.commit()
            return agent.id, ids
    finally:
        await engine.dispose()


async def _balance(name: str) -> int:
    engine = create_engine(Settings().resolved_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return await ledger_service.balance(session, name)
    finally:
        await engine.dispose()


def test_list_approve_reject_and_sync(env: Path) -> None:
    agent_id, (first, second) = asyncio.run(_two_payouts())
    listed = runner.invoke(app, ["payouts", "list", "--status", "requested"])
    assert listed.exit_code == 0, listed.output
    assert first in listed.output and second in listed.output
    assert "2 of 2 payouts" in listed.output

    approved = runner.invoke(app, ["payouts", "approve", first])
    assert approved.exit_code == 0, approved.output
    assert f"{first} paid" in approved.output
    again = runner.invoke(app, ["payouts", "approve", first])
    assert again.exit_code == 0 and f"{first} paid" in again.output

    rejected = runner.invoke(app, ["payouts", "reject", second, "--reason", "duplicate"])
    assert rejected.exit_code == 0, rejected.output
    assert "rejected" in rejected.output and "duplicate" in rejected.output
    late = runner.invoke(app, ["payouts", "approve", second])
    assert late.exit_code == 1
    assert "is rejected; it cannot be approved" in late.output

    assert asyncio.run(_balance(ledger_service.agent_name(agent_id))) == 4_000
    synced = runner.invoke(app, ["payouts", "sync"])
    assert synced.exit_code == 0, synced.output
    assert json.loads(synced.output)["paid"] == 0
    check = runner.invoke(app, ["ledger", "check"])
    assert check.exit_code == 0 and json.loads(check.output)["ok"] is True


def test_bad_arguments_name_the_field(env: Path) -> None:
    bad_id = runner.invoke(app, ["payouts", "approve", "not-a-uuid"])
    assert bad_id.exit_code == 2 and "PAYOUT_ID" in bad_id.output
    bad_status = runner.invoke(app, ["payouts", "list", "--status", "lost"])
    assert bad_status.exit_code == 2 and "--status" in bad_status.output
    unknown = runner.invoke(app, ["payouts", "reject", str(uuid.uuid4()), "--reason", "x"])
    assert unknown.exit_code == 1 and "not found" in unknown.output
