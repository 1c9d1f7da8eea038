"""The ``dukenet`` command line (Typer): serve, runner, trainer, users, agents, admin, export,
ledger, models, demo. Administration commands act on the configured database directly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from dukenet.config import Settings
from dukenet.datasets.cli import datasets_app
from dukenet.errors import DukenetError
from dukenet.finetune.cli import finetune_app
from dukenet.replay import BuiltinDataset, Complexity, Pricing

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from dukenet.accounts.models import User
    from dukenet.agents import service as agents_service
    from dukenet.learning import tuning
    from dukenet.payments import service as payments_service
    from dukenet.payments.models import Payout

# Heavy modules (the ORM, scikit-learn, uvicorn, the app) are imported by the commands that use
# them, so that ``dukenet --help`` answers in well under a second (tests/test_cli_imports.py).

app = typer.Typer(help="DukeNET: a self-improving AI agent marketplace.", no_args_is_help=True)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
models_app = typer.Typer(help="The Duke model registry.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
admin_app = typer.Typer(help="Administration: system metrics.", no_args_is_help=True)
agents_app = typer.Typer(help="Agents on the market.", no_args_is_help=True)
payouts_app = typer.Typer(help="Payouts: list, approve, reject, sync.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(models_app, name="models")
app.add_typer(ledger_app, name="ledger")
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(agents_app, name="agents")
app.add_typer(payouts_app, name="payouts")
app.add_typer(datasets_app, name="datasets")
app.add_typer(finetune_app, name="finetune")

T = TypeVar("T")


def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from dukenet.db import create_sessionmaker, engine_for

    async def run() -> T:
        engine = engine_for(settings)
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


LOG_LEVELS = ("debug", "info", "warning", "error")
LogLevelOption = Annotated[
    str | None,
    typer.Option(help="Least level logged: debug, info, warning or error (DUKENET_LOG_LEVEL)."),
]


def _logging_settings(log_level: str | None, access_log: bool | None = None) -> Settings:
    """Return the settings with the command line's log options applied; they are put in the
    environment too, so that processes started from this one (workers) log the same way."""
    import os

    if log_level is not None:
        if log_level.lower() not in LOG_LEVELS:
            _bad_option("--log-level", "must be debug, info, warning or error")
        os.environ["DUKENET_LOG_LEVEL"] = log_level.lower()
    if access_log is not None:
        os.environ["DUKENET_ACCESS_LOG"] = "true" if access_log else "false"
    settings = Settings()
    from dukenet.kit.hardening import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    return settings


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    log_level: LogLevelOption = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log one line a request (off by default; DUKENET_ACCESS_LOG).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="API processes on the port (PostgreSQL only); the embedded runners, trainer "
            "and other background work then run once, in this process, not in each.",
        ),
    ] = 1,
) -> None:
    """Run the API with in-process runners and trainer (OpenAPI at /docs)."""
    import structlog
    import uvicorn

    from dukenet.db import is_sqlite
    from dukenet.main import create_app

    settings = _logging_settings(log_level, access_log)
    if workers > 1 and is_sqlite(settings.resolved_database_url):
        _bad_option(
            "--workers",
            "needs PostgreSQL (DUKENET_DATABASE_URL): SQLite takes one writer at a time, so "
            "more processes add nothing; serve with one, or scale out on PostgreSQL",
        )
    bind_host, bind_port = host or settings.host, port or settings.port
    structlog.get_logger("dukenet.serve").info(
        "api listening",
        url=f"http://{bind_host}:{bind_port}",
        docs=f"http://{bind_host}:{bind_port}/docs",
        workers=workers,
        access_log=settings.access_log,
    )
    options: dict[str, Any] = {
        "host": bind_host,
        "port": bind_port,
        "log_level": "debug" if settings.log_level == "debug" else "warning",
        "access_log": False,  # DUKENET_ACCESS_LOG logs requests as structured lines instead
        **proxy_options(settings),
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    with _background_services(settings):
        # every worker builds its app from the environment: HTTP only, schema already migrated
        _worker_environment()
        uvicorn.run("dukenet.main:create_app", factory=True, workers=workers, **options)


def _worker_environment() -> None:
    """Set what the ``--workers`` processes read: no background work (it runs once, in the
    parent) and no migration (the parent migrated before they start)."""
    import os

    os.environ.update(
        {
            "DUKENET_EMBEDDED_RUNNERS": "0",
            "DUKENET_EMBEDDED_TRAINER": "false",
            "DUKENET_EMBEDDED_SWEEPER": "false",
            "DUKENET_EMBEDDED_JUDGE": "false",
            "DUKENET_EMBEDDED_WEBHOOKS": "false",
            "DUKENET_AUTO_MIGRATE": "false",
        }
    )


@contextlib.contextmanager
def _background_services(settings: Settings) -> Iterator[None]:
    """Run the app's lifespan (migration, embedded runners, trainer, sweeper, judge,
    webhooks) in a thread of this process, serving no HTTP, while the body runs; the
    ``--workers`` processes serve HTTP. Returns once it is up; stops it on leaving."""
    import threading

    from dukenet.main import create_app

    ready, failed = threading.Event(), []
    holder: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}

    async def run() -> None:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            stop = asyncio.Event()
            holder["loop"] = (asyncio.get_running_loop(), stop)
            ready.set()
            await stop.wait()

    def main() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # reported to the caller below
            failed.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=main, name="dukenet-background", daemon=True)
    thread.start()
    ready.wait()
    if failed:
        typer.echo(f"error: the background services did not start: {failed[0]}", err=True)
        raise typer.Exit(1)
    try:
        yield
    finally:
        loop, stop = holder["loop"]
        with contextlib.suppress(RuntimeError):  # its loop already ended
            loop.call_soon_threadsafe(stop.set)
        thread.join()


def proxy_options(settings: Settings) -> dict[str, Any]:
    """Return uvicorn's proxy-header options: ``X-Forwarded-For``/``-Proto`` are believed only
    from ``DUKENET_TRUSTED_PROXIES`` (none by default, whatever uvicorn's own default)."""
    trusted = ",".join(p.strip() for p in settings.trusted_proxies.split(",") if p.strip())
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": trusted}


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
    log_level: LogLevelOption = None,
) -> None:
    """Run a stand-alone runner: from the database (scale-out path) or, with --server and
    --api-key, over HTTP for an operator's own agents on any machine."""
    import httpx
    import structlog

    from dukenet.db import create_sessionmaker, engine_for
    from dukenet.events.bell import start_fanout, transport_kind
    from dukenet.files.storage import storage_from_settings
    from dukenet.kit import netguard
    from dukenet.kit.bell import TaskBell
    from dukenet.kit.logs import printable_database_url
    from dukenet.kit.secrets import SecretBox
    from dukenet.main import build_executors
    from dukenet.runners.remote import RemoteRunner
    from dukenet.runners.worker import Runner

    settings = _logging_settings(log_level)
    if (server is None) != (api_key is None):
        typer.echo("error: --server and --api-key go together", err=True)
        raise typer.Exit(2)
    log = structlog.get_logger("dukenet.runner")

    async def work(stop: asyncio.Event) -> None:
        # agents' endpoints are called under the egress policy (DUKENET_ALLOWED_AGENT_NETWORKS)
        egress = netguard.EgressPolicy.from_settings(settings)
        async with netguard.guarded_client(egress, timeout=settings.llm_timeout_s) as llm_client:
            # A remote runner never receives stored keys: its agents name api_key_env.
            secrets = None if server is not None else SecretBox.from_settings(settings)
            executors = build_executors(llm_client, secrets)
            kinds = sorted(kind.value for kind in executors)
            if server is not None and api_key is not None:
                log.info("runner started", name=name, over="http", server=server, kinds=kinds)
                async with httpx.AsyncClient(
                    base_url=server.rstrip("/") + "/api/v2",
                    headers={"X-API-Key": api_key},
                    timeout=30,
                ) as api:
                    await RemoteRunner(api, executors, name=name).run_forever(stop)
                return
            engine = engine_for(settings)
            # woken at once by the API processes' new tasks, and its results wake their
            # gateway calls (Redis, else PostgreSQL LISTEN/NOTIFY; events/bell.py)
            bell = TaskBell()
            fanout = start_fanout(bell, settings, stop)
            worker = Runner(
                create_sessionmaker(engine),
                settings,
                executors,
                name=name,
                storage=storage_from_settings(settings),
                bell=bell,
            )
            log.info(
                "runner started",
                name=worker.name,
                over="database",
                database=printable_database_url(settings.resolved_database_url),
                kinds=kinds,
                poll_s=settings.runner_poll_s,
                lease_s=settings.lease_s,
                bell=transport_kind(settings),
            )

            async def wake_on_stop() -> None:  # an idle runner waits on the bell, not on stop
                await stop.wait()
                bell.new_work(fan_out=False)

            waker = asyncio.create_task(wake_on_stop())
            await worker.run_forever(stop)
            await waker
            if fanout is not None:
                await fanout[1]
            await engine.dispose()
            log.info("runner stopped", name=worker.name)

    _run_until_signal(work)


@app.command()
def trainer(log_level: LogLevelOption = None) -> None:
    """Run a stand-alone trainer that watches the retraining triggers (scale-out path)."""
    import structlog

    from dukenet.db import create_sessionmaker, engine_for
    from dukenet.kit.logs import printable_database_url
    from dukenet.learning.trainer import Trainer

    settings = _logging_settings(log_level)
    structlog.get_logger("dukenet.trainer").info(
        "trainer started", database=printable_database_url(settings.resolved_database_url)
    )

    async def work(stop: asyncio.Event) -> None:
        engine = engine_for(settings)
        await Trainer(create_sessionmaker(engine), settings).run_forever(stop)
        await engine.dispose()

    _run_until_signal(work)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from dukenet.migrate import upgrade

    settings = Settings()
    upgrade(settings.resolved_database_url, pooler=settings.database_pooler)
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
    from dukenet.accounts import service as accounts_service
    from dukenet.accounts.models import UserRole
    from dukenet.migrate import upgrade

    settings = Settings()
    upgrade(settings.resolved_database_url, pooler=settings.database_pooler)
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
    from dukenet.accounts import repository as accounts_repository
    from dukenet.ledger import service as ledger_service

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


def _console_admin() -> User:
    """Return the unsaved administrator that commands act as: whoever runs them on the
    database's machine (it owns nothing and cannot be deactivated)."""
    from dukenet.accounts.models import User, UserRole

    return User(id=uuid.UUID(int=0), email="console@localhost", role=UserRole.ADMIN)


def _bad_option(name: str, problem: str) -> NoReturn:
    typer.echo(f"error: {name}: {problem}", err=True)
    raise typer.Exit(2)


@users_app.command("list")
def users_list(
    role: Annotated[
        str | None, typer.Option(help="Only users of this role: buyer, agent or admin.")
    ] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="Only active or inactive users.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (newest first).")] = 0,
) -> None:
    """List users, newest first, as GET /api/v2/admin/users does."""
    from dukenet.accounts import service as accounts_service
    from dukenet.accounts.models import UserRole

    roles = [r.value for r in UserRole]
    if role is not None and role not in roles:
        _bad_option("--role", f"must be {', '.join(roles[:-1])} or {roles[-1]}")

    async def work(session: AsyncSession) -> list[str]:
        users, total = await accounts_service.list_users(
            session,
            role=UserRole(role) if role else None,
            is_active=active,
            limit=limit,
            offset=offset,
        )
        lines = [f"{'email':<40} {'role':<6} {'active':<6} {'created':<19} id"]
        lines += [
            f"{u.email:<40} {u.role.value:<6} {'yes' if u.is_active else 'no':<6} "
            f"{u.created_at:%Y-%m-%d %H:%M:%S} {u.id}"
            for u in users
        ]
        lines.append(f"{len(users)} of {total} users")
        return lines

    typer.echo("\n".join(_with_session(Settings(), work)))


def _set_user_active(email: str, active: bool) -> None:
    from dukenet.accounts import repository as accounts_repository
    from dukenet.accounts import service as accounts_service

    async def work(session: AsyncSession) -> str:
        user = await accounts_repository.get_by_email(session, email)
        if user is None:
            raise DukenetError(f"EMAIL: no user {email!r}")
        user = await accounts_service.set_active(
            session, admin=_console_admin(), user_id=user.id, active=active
        )
        return user.email

    done = _with_session(Settings(), work)
    typer.echo(f"{'reactivated' if active else 'deactivated'}: {done}")


@users_app.command("deactivate")
def users_deactivate(email: Annotated[str, typer.Argument(help="Whom to deactivate.")]) -> None:
    """Deactivate a user: their tokens and API keys stop working at once."""
    _set_user_active(email, False)


@users_app.command("reactivate")
def users_reactivate(email: Annotated[str, typer.Argument(help="Whom to reactivate.")]) -> None:
    """Reactivate a user: they can log in again."""
    _set_user_active(email, True)


@agents_app.command("list")
def agents_list() -> None:
    """List every agent, enabled or not, with its price and record."""
    from dukenet.agents import service as agents_service

    async def work(session: AsyncSession) -> list[str]:
        agents = await agents_service.list_agents(session)
        lines = [
            f"{'name':<32} {'kind':<7} {'enabled':<7} {'base sat':>12} {'tasks':>6} "
            f"{'success':>7} id"
        ]
        lines += [
            f"{a.name:<32} {a.kind.value:<7} {'yes' if a.is_enabled else 'no':<7} "
            f"{a.base_price_sat:>12} {a.finished_tasks:>6} {a.success_rate:>7.3f} {a.id}"
            for a in agents
        ]
        lines.append(f"{len(agents)} agents")
        return lines

    typer.echo("\n".join(_with_session(Settings(), work)))


def _set_agent_enabled(name: str, enabled: bool) -> None:
    from dukenet.agents import repository as agents_repository
    from dukenet.agents import service as agents_service
    from dukenet.tasks import service as tasks_service

    settings = Settings()

    async def work(session: AsyncSession) -> str:
        agent = await agents_repository.get_by_name(session, name)
        if agent is None:
            raise DukenetError(f"NAME: no agent {name!r}")
        agent = await agents_service.set_enabled(
            session, actor=_console_admin(), agent_id=agent.id, enabled=enabled
        )
        if enabled:
            return f"enabled: {agent.name}"
        moved, refunded = await tasks_service.reassign_queued(
            session, settings=settings, agent_id=agent.id
        )
        return f"disabled: {agent.name} ({moved} queued tasks moved, {refunded} refunded)"

    typer.echo(_with_session(settings, work))


@agents_app.command("enable")
def agents_enable(name: Annotated[str, typer.Argument(help="The agent's name.")]) -> None:
    """Put an agent back on the market."""
    _set_agent_enabled(name, True)


@agents_app.command("disable")
def agents_disable(name: Annotated[str, typer.Argument(help="The agent's name.")]) -> None:
    """Take an agent off the market; its queued tasks move to other agents or are refunded."""
    _set_agent_enabled(name, False)


@agents_app.command("rotate-keys")
def agents_rotate_keys() -> None:
    """Re-encrypt every stored agent API key under the first key of DUKENET_SECRET_KEY.

    Keys that no configured key opens are listed and left as they were, and the command exits
    1; the others are re-encrypted and committed all the same (they stay readable with the
    keys configured), so it can simply run again once those agents are fixed.
    """
    from dukenet.agents import service as agents_service
    from dukenet.kit.secrets import SECRET_KEY_FILE, SecretBox

    settings = Settings()
    if not settings.secret_key.strip():
        _bad_option(
            "DUKENET_SECRET_KEY",
            "not set; give the new key first and the current ones after it, comma-separated "
            f"(a generated key is in {settings.var_dir / SECRET_KEY_FILE})",
        )
    try:
        secrets = SecretBox.from_settings(settings)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    async def work(session: AsyncSession) -> agents_service.KeyRotationReport:
        return await agents_service.rotate_api_keys(session, secrets=secrets)

    report = _with_session(settings, work)
    typer.echo(
        f"{report.rotated} of {report.keyed} stored API keys re-encrypted under the newest key "
        f"({report.scanned} llm agents scanned)"
    )
    if report.undecryptable:
        typer.echo(
            f"error: {len(report.undecryptable)} stored API keys cannot be decrypted with any "
            f"key in DUKENET_SECRET_KEY (left as they were): {', '.join(report.undecryptable)}",
            err=True,
        )
        raise typer.Exit(1)


@admin_app.command("metrics")
def admin_metrics() -> None:
    """Print the system metrics (JSON) as GET /api/v2/admin/metrics returns them."""
    from dukenet.monitoring import service as monitoring_service

    settings = Settings()
    metrics = _with_session(
        settings,
        lambda session: monitoring_service.system_metrics(
            session, success_threshold=settings.success_threshold
        ),
    )
    typer.echo(metrics.model_dump_json(indent=2))


@app.command("export")
def export(
    kind: Annotated[str, typer.Argument(help="tasks, results or outcomes.")],
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of standard output.")
    ] = None,
) -> None:
    """Export every task, result or outcome as CSV or JSON Lines, oldest first (streamed)."""
    from dukenet.db import create_sessionmaker, engine_for
    from dukenet.monitoring.exports import ExportFormat, ExportKind, export_rows

    kinds = [k.value for k in ExportKind]
    if kind not in kinds:
        _bad_option("KIND", f"must be {', '.join(kinds[:-1])} or {kinds[-1]}")
    if fmt not in [f.value for f in ExportFormat]:
        _bad_option("--format", "must be csv or jsonl")
    if output is not None and output.is_dir():
        _bad_option("--output", f"{output} is a directory")
    settings = Settings()

    async def write(sink: Callable[[bytes], object]) -> int:
        engine = engine_for(settings)
        written = 0
        try:
            async for chunk in export_rows(
                create_sessionmaker(engine), ExportKind(kind), ExportFormat(fmt)
            ):
                sink(chunk)
                written += len(chunk)
        finally:
            await engine.dispose()
        return written

    if output is None:
        asyncio.run(write(lambda chunk: typer.echo(chunk.decode(), nl=False)))
        return
    # Write beside the target and rename at the end: no half-written export under its name.
    partial = output.with_name(output.name + ".part")
    try:
        with partial.open("wb") as f:
            written = asyncio.run(write(f.write))
        partial.replace(output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    typer.echo(f"wrote {output} ({written} bytes)", err=True)


def _payout_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        _bad_option("PAYOUT_ID", f"{value!r} is not a payout id (a UUID)")


def _payout_line(payout: Payout) -> str:
    return (
        f"{payout.id} {payout.status.value:<9} {payout.amount_sat:>14} "
        f"{payout.destination.value:<8} {payout.provider:<9} {payout.created_at:%Y-%m-%d %H:%M:%S}"
        + (f"  {payout.reason}" if payout.reason else "")
    )


@payouts_app.command("list")
def payouts_list(
    status: Annotated[
        str | None,
        typer.Option(help="Only this state: requested, sending, paid, rejected, failed."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (newest first).")] = 0,
) -> None:
    """List every operator's payouts, newest first, as GET /api/v2/admin/payouts does."""
    from dukenet.payments import service as payments_service
    from dukenet.payments.models import PayoutStatus

    states = [s.value for s in PayoutStatus]
    if status is not None and status not in states:
        _bad_option("--status", f"must be {', '.join(states[:-1])} or {states[-1]}")

    async def work(session: AsyncSession) -> list[str]:
        payouts, total = await payments_service.list_payouts(
            session,
            requested_by_id=None,
            status=PayoutStatus(status) if status else None,
            limit=limit,
            offset=offset,
        )
        lines = [f"{'id':<36} {'status':<9} {'amount_sat':>14} {'to':<8} {'provider':<9} created"]
        lines += [_payout_line(p) for p in payouts]
        lines.append(f"{len(payouts)} of {total} payouts")
        return lines

    typer.echo("\n".join(_with_session(Settings(), work)))


@payouts_app.command("approve")
def payouts_approve(
    payout_id: Annotated[str, typer.Argument(help="The payout's id.")],
) -> None:
    """Approve a requested payout and pay it through the configured provider (paid, failed
    with the amount returned to the agent, or still sending); approving again pays once."""
    from dukenet.payments import service as payments_service
    from dukenet.payments.models import PayoutStatus
    from dukenet.payments.providers import open_provider

    settings = Settings()
    target = _payout_id(payout_id)

    async def work(session: AsyncSession) -> str:
        async with open_provider(settings) as provider:
            payout, _ = await payments_service.approve(
                session, provider=provider, admin=_console_admin(), payout_id=target
            )
            await session.commit()
            if payout.status is PayoutStatus.SENDING:
                payout = await payments_service.send(session, provider=provider, payout_id=target)
        return _payout_line(payout)

    typer.echo(_with_session(settings, work))


@payouts_app.command("reject")
def payouts_reject(
    payout_id: Annotated[str, typer.Argument(help="The payout's id.")],
    reason: Annotated[str, typer.Option(help="Why (shown to the operator).")],
) -> None:
    """Reject a requested payout: the held amount returns to the agent's earnings."""
    from dukenet.payments import service as payments_service

    target = _payout_id(payout_id)
    if not 1 <= len(reason) <= 2000:
        _bad_option("--reason", "must be 1 to 2000 characters")

    async def work(session: AsyncSession) -> str:
        payout, _ = await payments_service.reject(
            session, admin=_console_admin(), payout_id=target, reason=reason
        )
        return _payout_line(payout)

    typer.echo(_with_session(Settings(), work))


@payouts_app.command("sync")
def payouts_sync() -> None:
    """Resolve every sending payout and pending deposit with the provider (after a crash, or as
    a poll that credits paid deposit invoices); print what it did as JSON."""
    import dataclasses

    from dukenet.db import create_sessionmaker, engine_for
    from dukenet.payments import service as payments_service
    from dukenet.payments.providers import open_provider

    settings = Settings()

    async def run() -> payments_service.SyncReport:
        engine = engine_for(settings)
        try:
            async with open_provider(settings) as provider:
                return await payments_service.sync(create_sessionmaker(engine), provider=provider)
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    typer.echo(json.dumps(dataclasses.asdict(report), indent=2))
    if report.errors:
        raise typer.Exit(1)


@ledger_app.command("check")
def ledger_check() -> None:
    """Recompute every balance from the entries; exit 1 on any difference."""
    from dukenet.ledger import service as ledger_service

    report = _with_session(Settings(), ledger_service.check)
    typer.echo(report.model_dump_json(indent=2))
    if not report.ok:
        raise typer.Exit(1)


@models_app.command("list")
def models_list() -> None:
    """List model versions with their held-out metrics; * marks the champion."""
    from dukenet.learning import service as learning_service

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
    from dukenet.learning import service as learning_service

    async def work(session: AsyncSession) -> int:
        return (await learning_service.promote(session, version, reason="cli")).version

    typer.echo(f"champion: v{_with_session(Settings(), work)}")


@models_app.command("rollback")
def models_rollback() -> None:
    """Return the champion to the previous one."""
    from dukenet.learning import service as learning_service

    async def work(session: AsyncSession) -> int:
        return (await learning_service.rollback(session)).version

    typer.echo(f"champion: v{_with_session(Settings(), work)}")


@models_app.command("tune")
def models_tune(
    trials: Annotated[int, typer.Option(min=1, help="Trials to run.")] = 30,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="Start no trial after S seconds.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler and folds.")] = 0,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 3,
    objective: Annotated[str, typer.Option(help="log_loss or brier.")] = "log_loss",
    study: Annotated[str | None, typer.Option(help="Resume this study (default: new).")] = None,
) -> None:
    """Tune Duke's configuration with Optuna on the train side; the next training uses it."""
    import dataclasses

    import optuna

    from dukenet.db import create_sessionmaker, engine_for
    from dukenet.learning import tuning

    if objective not in ("log_loss", "brier"):
        typer.echo("error: --objective must be log_loss or brier", err=True)
        raise typer.Exit(2)
    settings = Settings()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    async def work() -> tuning.TuningResult:
        engine = engine_for(settings)
        try:
            result, _ = await tuning.run_tuning(
                create_sessionmaker(engine),
                database_url=settings.resolved_database_url,
                n_trials=trials,
                timeout_s=timeout,
                seed=seed,
                split_seed=settings.split_seed,
                n_folds=folds,
                objective="brier" if objective == "brier" else "log_loss",
                study_name=study,
            )
            return result
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(work())
    except DukenetError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    default = "-" if result.default_value is None else f"{result.default_value:.5f}"
    typer.echo(
        f"study {result.study_name}: {result.n_trials} trials, best {result.objective} "
        f"{result.best_value:.5f} (default config {default}) on {result.n_outcomes} "
        f"train-side outcomes, {result.n_folds}-fold"
    )
    typer.echo(json.dumps(dataclasses.asdict(result.best_config), indent=2))


@app.command()
def replay(
    file: Annotated[
        Path, typer.Argument(help="Recorded outcomes: .csv, .jsonl or .parquet (or .csv.gz ...).")
    ],
    server: Annotated[
        str | None, typer.Option(help="The market's URL (default http://HOST:PORT from settings).")
    ] = None,
    admin_email: Annotated[
        str, typer.Option(envvar="DUKENET_ADMIN_EMAIL", help="An admin (registers replay agents).")
    ] = "",
    admin_password: Annotated[
        str, typer.Option(envvar="DUKENET_ADMIN_PASSWORD", help="The admin's password.")
    ] = "",
    limit: Annotated[int | None, typer.Option(min=1, help="Replay only the first N tasks.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the task order.")] = 0,
    shuffle: Annotated[bool, typer.Option(help="Shuffle the tasks (else the file order).")] = True,
    buyers: Annotated[int, typer.Option(min=1, help="Buyers submitting in turn.")] = 1,
    batch: Annotated[int, typer.Option(min=1, help="Tasks submitted before executing.")] = 100,
    complexity: Annotated[
        Complexity,
        typer.Option(
            case_sensitive=False,
            help="Task complexity (with --pricing complexity): the file's column (else from "
            "the text), or from the prompt text; 'cost' is the old spelling of --pricing "
            "recorded-cost.",
        ),
    ] = Complexity.DATASET,
    pricing: Annotated[
        Pricing,
        typer.Option(
            case_sensitive=False,
            help="complexity: price = mean recorded cost x complexity x reputation; "
            "recorded-cost: price follows each task's recorded cost (x reputation). "
            "See dukenet.replay.market.",
        ),
    ] = Pricing.COMPLEXITY,
    name: Annotated[
        str | None, typer.Option(help="Dataset name on the replay agents (default: file name).")
    ] = None,
    agent_prefix: Annotated[str, typer.Option(help="Prefix of the agents' market names.")] = "",
    wait_for_trainer: Annotated[
        bool, typer.Option(help="After each batch, wait for the server's trainer to catch up.")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the summary as JSON here.")
    ] = None,
) -> None:
    """Drive a running market with a recorded-outcomes dataset (long format; see README)."""
    import httpx

    from dukenet.replay.dataset import DatasetError, read_outcomes
    from dukenet.replay.market import (
        ReplayError,
        ReplayOptions,
        format_summary,
        replay_on_server,
    )

    settings = Settings()
    if not admin_email or not admin_password:
        typer.echo(
            "error: --admin-email and --admin-password (or DUKENET_ADMIN_EMAIL and "
            "DUKENET_ADMIN_PASSWORD) are required",
            err=True,
        )
        raise typer.Exit(2)
    try:
        dataset = read_outcomes(file, name=name)
    except DatasetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        options = ReplayOptions(
            limit=limit,
            seed=seed,
            shuffle=shuffle,
            buyers=buyers,
            batch=batch,
            complexity=complexity,
            pricing=pricing,
            usd_to_sat=settings.replay_usd_to_sat,
            agent_prefix=agent_prefix,
            wait_for_trainer=wait_for_trainer,
            progress=lambda line: typer.echo(line, err=True),
        )
    except ValueError as exc:
        typer.echo(f"error: --pricing/--complexity: {exc}", err=True)
        raise typer.Exit(2) from exc
    url = server or f"http://{settings.host}:{settings.port}"
    try:
        summary = asyncio.run(
            replay_on_server(
                dataset,
                url,
                admin_email=admin_email,
                admin_password=admin_password,
                options=options,
            )
        )
    except ReplayError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except httpx.TransportError as exc:
        typer.echo(f"error: cannot reach {url}: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(format_summary(summary))
    if json_out is not None:
        json_out.write_text(json.dumps(summary, indent=2))


@app.command()
def demo(
    dataset: Annotated[
        BuiltinDataset,
        typer.Option(
            case_sensitive=False,
            help="routerbench (11 models) or mmlu-pro (31 models; 2,000 train and 500 test "
            "questions unless --limit/--test-limit).",
        ),
    ] = BuiltinDataset.ROUTERBENCH,
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
    """Run the main job: the marketplace learns to route RouterBench or MMLU-Pro prompts (see
    README)."""
    from dukenet.demo import DemoConfig, run_demo

    report = run_demo(
        DemoConfig(dataset=dataset, out=out, seed=seed, limit=limit, test_limit=test_limit)
    )
    typer.echo(f"report: {out / 'report.json'}  plot: {out / 'learning_curve.png'}")
    if not report["target"]["met"]:
        typer.echo("target not met: " + json.dumps(report["target"]), err=True)
