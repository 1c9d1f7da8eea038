"""The ``dukenet`` command line against real databases (SQLite; the administration commands
also PostgreSQL)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from typer.testing import CliRunner

from dukenet.accounts import repository as accounts_repository
from dukenet.accounts.models import User, UserRole
from dukenet.agents import repository as agents_repository
from dukenet.agents import service as agents_service
from dukenet.agents.models import AgentKind
from dukenet.agents.schemas import AgentCreate, LLMAgentCreate
from dukenet.cli import app
from dukenet.config import Settings
from dukenet.db import create_engine, create_sessionmaker
from dukenet.kit.secrets import SecretBox, SecretError, generate_key
from dukenet.kit.state import AppState
from dukenet.learning.routerbench import complexity_of, load_routerbench
from dukenet.main import create_app
from dukenet.runners.replay import ReplayExecutor
from dukenet.runners.worker import Runner
from tests.factories import create_admin, credit, register, replay_agent

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLI at an empty embedded setup under ``tmp_path``."""
    monkeypatch.setenv("DUKENET_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("DUKENET_DATABASE_URL", raising=False)
    return tmp_path


def test_create_admin_credit_and_ledger_check(env: Path) -> None:
    created = runner.invoke(
        app, ["users", "create-admin", "--email", "root@example.com", "--password", "s3cret-pass"]
    )
    assert created.exit_code == 0, created.output
    credited = runner.invoke(
        app, ["users", "credit", "--email", "root@example.com", "--amount-sat", "5000"]
    )
    assert credited.exit_code == 0, credited.output
    assert "balance: 5000 sat" in credited.output
    check = runner.invoke(app, ["ledger", "check"])
    assert check.exit_code == 0, check.output
    report = json.loads(check.output)
    assert report["ok"] is True and report["total_sat"] == 0 and report["transactions"] == 1


def test_errors_name_the_field(env: Path) -> None:
    short = runner.invoke(
        app, ["users", "create-admin", "--email", "a@example.com", "--password", "short"]
    )
    assert short.exit_code != 0 and "--password" in short.output
    runner.invoke(app, ["db", "upgrade"])
    unknown = runner.invoke(
        app, ["users", "credit", "--email", "nobody@example.com", "--amount-sat", "1"]
    )
    assert unknown.exit_code == 1 and "--email" in unknown.output
    negative = runner.invoke(
        app, ["users", "credit", "--email", "a@example.com", "--amount-sat", "0"]
    )
    assert negative.exit_code == 2 and "amount-sat" in negative.output
    duplicate_args = [
        "users",
        "create-admin",
        "--email",
        "b@example.com",
        "--password",
        "longenough",
    ]
    assert runner.invoke(app, duplicate_args).exit_code == 0
    again = runner.invoke(app, duplicate_args)
    assert again.exit_code == 1 and "already registered" in again.output


def test_models_commands_without_versions(env: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "version" in listed.output
    rollback = runner.invoke(app, ["models", "rollback"])
    assert rollback.exit_code == 1 and "no champion" in rollback.output
    promote = runner.invoke(app, ["models", "promote", "3"])
    assert promote.exit_code == 1 and "not found" in promote.output


# Administration commands against a migrated database on each backend, with data made
# through the API.


@dataclass
class Market:
    """What ``seed_market`` made: emails and agent names, and the ids the API gave them."""

    admin_email: str
    buyer_email: str
    operator_email: str
    agent_name: str
    tasks: int


async def _seed(settings: Settings, tasks: int) -> Market:
    settings.dispute_window_s = 0.0  # results settle at once: agents are paid
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        state: AppState = application.state.dukenet
        state.hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v2") as client:
            admin_id, admin = await create_admin(state)
            buyer, buyer_headers = await register(client)
            operator, _ = await register(client, role="agent")
            agent = await replay_agent(client, admin, model="gpt-3.5-turbo-1106")
            await credit(client, admin, buyer["id"], 10**8)
            for prompt in load_routerbench("train").prompts[:tasks]:
                body = {"description": prompt, "complexity": complexity_of(prompt)}
                response = await client.post("/tasks", headers=buyer_headers, json=body)
                assert response.status_code == 201, response.text
            runner = Runner(state.sessionmaker, settings, {AgentKind.REPLAY: ReplayExecutor()})
            while await runner.run_once():
                pass
            async with state.sessionmaker() as session:
                admin_user = await accounts_repository.get(session, admin_id)
                assert admin_user is not None
                admin_email = admin_user.email
    return Market(admin_email, buyer["email"], operator["email"], agent["name"], tasks)


@pytest.fixture
def market(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> Market:
    """A marketplace with an admin, a buyer, an operator, a replay agent and 4 executed tasks;
    the CLI is pointed at its database."""
    monkeypatch.setenv("DUKENET_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("DUKENET_DATABASE_URL", database_url)
    return asyncio.run(_seed(settings, tasks=4))


def test_admin_metrics_match_the_marketplace(market: Market) -> None:
    result = runner.invoke(app, ["admin", "metrics"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert sum(metrics["tasks_by_status"].values()) == market.tasks
    assert metrics["users"] == 3
    assert metrics["active_agents"] == 1
    assert metrics["outcomes"] == market.tasks
    assert metrics["satoshis_transacted"] > 0
    assert set(metrics) >= {"success_rate", "training_samples", "production_model_version"}


def test_users_list_deactivate_and_reactivate(market: Market) -> None:
    listed = runner.invoke(app, ["users", "list"])
    assert listed.exit_code == 0, listed.output
    assert market.buyer_email in listed.output and "3 of 3 users" in listed.output
    buyers = runner.invoke(app, ["users", "list", "--role", "buyer"])
    assert market.buyer_email in buyers.output and market.operator_email not in buyers.output

    off = runner.invoke(app, ["users", "deactivate", market.buyer_email])
    assert off.exit_code == 0 and f"deactivated: {market.buyer_email}" in off.output
    inactive = runner.invoke(app, ["users", "list", "--inactive"])
    assert market.buyer_email in inactive.output and "1 of 1 users" in inactive.output
    assert market.admin_email not in inactive.output

    on = runner.invoke(app, ["users", "reactivate", market.buyer_email])
    assert on.exit_code == 0 and f"reactivated: {market.buyer_email}" in on.output
    assert "0 of 0 users" in runner.invoke(app, ["users", "list", "--inactive"]).output

    unknown = runner.invoke(app, ["users", "deactivate", "nobody@example.com"])
    assert unknown.exit_code == 1 and "EMAIL: no user 'nobody@example.com'" in unknown.output
    bad_role = runner.invoke(app, ["users", "list", "--role", "pirate"])
    assert bad_role.exit_code == 2 and "--role: must be buyer, agent or admin" in bad_role.output


def test_agents_list_enable_and_disable(market: Market) -> None:
    listed = runner.invoke(app, ["agents", "list"])
    assert listed.exit_code == 0, listed.output
    [row] = [line for line in listed.output.splitlines() if line.startswith(market.agent_name)]
    assert row.split()[1:3] == ["replay", "yes"]

    off = runner.invoke(app, ["agents", "disable", market.agent_name])
    assert off.exit_code == 0 and f"disabled: {market.agent_name}" in off.output
    [row] = [
        line
        for line in runner.invoke(app, ["agents", "list"]).output.splitlines()
        if line.startswith(market.agent_name)
    ]
    assert row.split()[2] == "no"
    metrics = json.loads(runner.invoke(app, ["admin", "metrics"]).output)
    assert metrics["active_agents"] == 0

    on = runner.invoke(app, ["agents", "enable", market.agent_name])
    assert on.exit_code == 0 and f"enabled: {market.agent_name}" in on.output
    unknown = runner.invoke(app, ["agents", "enable", "no-such-agent"])
    assert unknown.exit_code == 1 and "NAME: no agent 'no-such-agent'" in unknown.output


def test_export_to_stdout_and_to_a_file(market: Market, tmp_path: Path) -> None:
    jsonl = runner.invoke(app, ["export", "outcomes", "--format", "jsonl"])
    assert jsonl.exit_code == 0, jsonl.output
    records = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(records) == market.tasks and {"task_id", "success"} <= set(records[0])

    target = tmp_path / "tasks.csv"
    written = runner.invoke(app, ["export", "tasks", "--format", "csv", "--output", str(target)])
    assert written.exit_code == 0, written.output
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == market.tasks and len({r["id"] for r in rows}) == market.tasks
    assert not (tmp_path / "tasks.csv.part").exists()
    default = runner.invoke(app, ["export", "results"])  # CSV by default
    assert len(list(csv.DictReader(io.StringIO(default.stdout)))) == market.tasks


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "tasks", "--format", "xml"], "--format: must be csv or jsonl"),
        (["export", "wallets"], "KIND: must be tasks, results or outcomes"),
        (["export", "tasks", "--output", "."], "--output: . is a directory"),
    ],
)
def test_export_errors_name_the_field(env: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


# Rotating the secret key that encrypts agents' stored API keys.

API_KEY = "sk-live-0123456789abcdefWXYZ"


async def _keyed_agents(settings: Settings, keys: dict[str, str]) -> None:
    """Register one ``llm`` agent per name, its API key encrypted under that name's secret key."""
    engine = create_engine(settings.resolved_database_url)
    async with create_sessionmaker(engine)() as session:
        owner = User(
            email=f"{uuid.uuid4().hex}@example.com", password_hash="x", role=UserRole.AGENT
        )
        session.add(owner)
        await session.flush()
        for name, secret_key in keys.items():
            llm = LLMAgentCreate.model_validate(
                {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key": API_KEY}
            )
            await agents_service.register(
                session,
                settings=settings,
                owner=owner,
                data=AgentCreate(name=name, kind="llm", llm=llm),
                secrets=SecretBox([secret_key]),
            )
        await session.commit()
    await engine.dispose()


async def _stored_token(settings: Settings, name: str) -> str:
    engine = create_engine(settings.resolved_database_url)
    async with create_sessionmaker(engine)() as session:
        agent = await agents_repository.get_by_name(session, name)
        assert agent is not None
        token: str = agent.config["api_key_encrypted"]
    await engine.dispose()
    return token


def test_agents_rotate_keys(
    database_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new, lost = generate_key(), generate_key(), generate_key()
    monkeypatch.setenv("DUKENET_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("DUKENET_DATABASE_URL", database_url)
    monkeypatch.setenv("DUKENET_SECRET_KEY", f"{new},{old}")
    asyncio.run(_keyed_agents(settings, {"keyed-a": old, "keyed-b": old}))

    rotated = runner.invoke(app, ["agents", "rotate-keys"])
    assert rotated.exit_code == 0, rotated.output
    assert "2 of 2 stored API keys re-encrypted under the newest key" in rotated.output
    for name in ("keyed-a", "keyed-b"):
        assert SecretBox([new]).decrypt(asyncio.run(_stored_token(settings, name))) == API_KEY

    # A key made under a key no longer configured: reported, exit 1; the others still rotate.
    asyncio.run(_keyed_agents(settings, {"keyed-c": old, "keyed-lost": lost}))
    newest = generate_key()
    monkeypatch.setenv("DUKENET_SECRET_KEY", f"{newest},{new},{old}")
    partial = runner.invoke(app, ["agents", "rotate-keys"])
    assert partial.exit_code == 1
    assert "3 of 4 stored API keys re-encrypted" in partial.output
    assert "DUKENET_SECRET_KEY (left as they were): keyed-lost" in partial.output
    for name in ("keyed-a", "keyed-c"):  # committed despite the failure
        token = asyncio.run(_stored_token(settings, name))
        assert SecretBox([newest]).decrypt(token) == API_KEY
        with pytest.raises(SecretError):
            SecretBox([new, old]).decrypt(token)
    assert SecretBox([lost]).decrypt(asyncio.run(_stored_token(settings, "keyed-lost"))) == API_KEY


def test_agents_rotate_keys_needs_a_configured_key(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DUKENET_SECRET_KEY", raising=False)
    runner.invoke(app, ["db", "upgrade"])
    unset = runner.invoke(app, ["agents", "rotate-keys"])
    assert unset.exit_code == 2
    assert "DUKENET_SECRET_KEY: not set" in unset.output
    assert not (env / "var" / "secret_key").exists()  # no key generated on the way
    monkeypatch.setenv("DUKENET_SECRET_KEY", f"{generate_key()},not-a-key")
    invalid = runner.invoke(app, ["agents", "rotate-keys"])
    assert invalid.exit_code == 2
    assert "DUKENET_SECRET_KEY: key 2 is not a Fernet key" in invalid.output
