"""The ``dukenet`` command line (Typer): serve, runner, trainer, users, ledger, models, demo."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import httpx
import typer
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts import repository as accounts_repository
from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import UserRole
from dukenet.config import Settings
from dukenet.db import create_engine, create_sessionmaker
from dukenet.errors import DukenetError
from dukenet.files.storage import storage_from_settings
from dukenet.learning import service as learning_service
from dukenet.learning.trainer import Trainer
from dukenet.ledger import service as ledger_service
from dukenet.migrate import upgrade
from dukenet.runners.worker import Runner

app = typer.Typer(help="DukeNET: a self-improving AI agent marketplace.", no_args_is_help=True)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
models_app = typer.Typer(help="The Duke model registry.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(models_app, name="models")
app.add_typer(ledger_app, name="ledger")
app.add_typer(db_app, name="db")

T = TypeVar("T")


def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(settings.resolved_database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except DukenetError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Run the API with in-process runners and trainer (OpenAPI at /docs)."""
    from dukenet.main import create_app

    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level="warning",
    )


def _run_until_signal(coro_factory: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await coro_factory(stop)

    asyncio.run(main())


@app.command()
def runner(
    name: Annotated[str | None, typer.Option(help="Runner name shown on leases.")] = None,
    server: Annotated[
        str | None,
        typer.Option(help="Server URL (e.g. https://dukenet.example.com): run over HTTP."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="DUKENET_API_KEY", help="Operator API key (dk_...).")
    ] = None,
) -> None:
    """Run a stand-alone runner: from the database (scale-out path) or, with --server and
    --api-key, over HTTP for an operator's own agents on any machine."""
    from dukenet.main import build_executors
    from dukenet.runners.remote import RemoteRunner

    settings = Settings()
    if (server is None) != (api_key is None):
        typer.echo("error: --server and --api-key go together", err=True)
        raise typer.Exit(2)

    async def work(stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=settings.llm_timeout_s) as llm_client:
            executors = build_executors(llm_client)
            if server is not None and api_key is not None:
                async with httpx.AsyncClient(
                    base_url=server.rstrip("/") + "/api/v2",
                    headers={"X-API-Key": api_key},
                    timeout=30,
                ) as api:
                    await RemoteRunner(api, executors, name=name).run_forever(stop)
                return
            engine = create_engine(settings.resolved_database_url)
            worker = Runner(
                create_sessionmaker(engine),
                settings,
                executors,
                name=name,
                storage=storage_from_settings(settings),
            )
            await worker.run_forever(stop)
            await engine.dispose()

    _run_until_signal(work)


@app.command()
def trainer() -> None:
    """Run a stand-alone trainer that watches the retraining triggers (scale-out path)."""
    settings = Settings()

    async def work(stop: asyncio.Event) -> None:
        engine = create_engine(settings.resolved_database_url)
        await Trainer(create_sessionmaker(engine), settings).run_forever(stop)
        await engine.dispose()

    _run_until_signal(work)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    upgrade(Settings().resolved_database_url)
    typer.echo("database is at head")


@users_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The admin's email.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True, envvar="DUKENET_ADMIN_PASSWORD"
        ),
    ],
) -> None:
    """Create an administrator."""
    settings = Settings()
    upgrade(settings.resolved_database_url)
    if len(password) < 8:
        typer.echo("error: --password must have at least 8 characters", err=True)
        raise typer.Exit(2)

    async def work(session: AsyncSession) -> str:
        user = await accounts_service.register(
            session,
            accounts_service.password_hasher(),
            email=email,
            password=password,
            role=UserRole.ADMIN,
            display_name="admin",
        )
        return str(user.id)

    typer.echo(_with_session(settings, work))


@users_app.command("credit")
def credit(
    email: Annotated[str, typer.Option(help="Whose wallet.")],
    amount_sat: Annotated[int, typer.Option(min=1, help="Satoshis to deposit.")],
) -> None:
    """Deposit satoshis into a user's wallet."""
    settings = Settings()

    async def work(session: AsyncSession) -> int:
        user = await accounts_repository.get_by_email(session, email)
        if user is None:
            raise DukenetError(f"--email: no user {email!r}")
        await ledger_service.ensure_system_accounts(session)
        await ledger_service.deposit(
            session, user_id=user.id, amount_sat=amount_sat, memo="cli credit"
        )
        return await ledger_service.balance(session, ledger_service.wallet_name(user.id))

    typer.echo(f"balance: {_with_session(settings, work)} sat")


@ledger_app.command("check")
def ledger_check() -> None:
    """Recompute every balance from the entries; exit 1 on any difference."""
    report = _with_session(Settings(), ledger_service.check)
    typer.echo(report.model_dump_json(indent=2))
    if not report.ok:
        raise typer.Exit(1)


@models_app.command("list")
def models_list() -> None:
    """List model versions with their held-out metrics; * marks the champion."""

    async def work(session: AsyncSession) -> list[str]:
        champion = await learning_service.champion_version(session)
        lines = [f"{'':1} {'version':>7} {'outcomes':>8} {'auc':>6} {'brier':>6} promoted"]
        for v in await learning_service.list_versions(session):
            auc, brier = v.metrics.get("roc_auc"), v.metrics.get("brier")
            lines.append(
                f"{'*' if v.version == champion else ' '} {v.version:>7} {v.outcomes_seen:>8} "
                f"{_fmt(auc):>6} {_fmt(brier):>6} {'yes' if v.promoted else 'no'}"
            )
        return lines

    typer.echo("\n".join(_with_session(Settings(), work)))


def _fmt(x: object) -> str:
    return f"{x:.3f}" if isinstance(x, float) else "-"


@models_app.command("promote")
def models_promote(
    version: Annotated[int, typer.Argument(help="Version to make champion.")],
) -> None:
    """Make a version the champion."""

    async def work(session: AsyncSession) -> int:
        return (await learning_service.promote(session, version, reason="cli")).version

    typer.echo(f"champion: v{_with_session(Settings(), work)}")


@models_app.command("rollback")
def models_rollback() -> None:
    """Return the champion to the previous one."""

    async def work(session: AsyncSession) -> int:
        return (await learning_service.rollback(session)).version

    typer.echo(f"champion: v{_with_session(Settings(), work)}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Directory for the database, report and plot.")] = Path(
        "var/demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed for the prompt order and exploration.")] = 0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Use only the first N train prompts.")
    ] = None,
    test_limit: Annotated[
        int | None, typer.Option(min=1, help="Evaluate on the first N test prompts.")
    ] = None,
) -> None:
    """Run the main job: the marketplace learns to route RouterBench prompts (see README)."""
    from dukenet.demo import DemoConfig, run_demo

    report = run_demo(DemoConfig(out=out, seed=seed, limit=limit, test_limit=test_limit))
    typer.echo(f"report: {out / 'report.json'}  plot: {out / 'learning_curve.png'}")
    if not report["target"]["met"]:
        typer.echo("target not met: " + json.dumps(report["target"]), err=True)
