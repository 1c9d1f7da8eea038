"""The FastAPI application factory and its lifespan (engine, runners, trainer)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Mapping

import httpx
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dukenet import __version__
from dukenet.accounts.rate_limit import LoginRateLimiter
from dukenet.accounts.service import TokenCodec, password_hasher
from dukenet.agents.models import AgentKind
from dukenet.api import api_router
from dukenet.config import Settings
from dukenet.db import create_engine, create_sessionmaker, is_transient, is_unavailable
from dukenet.errors import DukenetError, ServiceUnavailable
from dukenet.events import bell as bell_fanout
from dukenet.events.hub import TaskEventHub
from dukenet.feedback.judge import Judge
from dukenet.files.storage import storage_from_settings
from dukenet.gateway import api as gateway_api
from dukenet.gateway import webhooks
from dukenet.kit import docs as offline_docs
from dukenet.kit import hardening
from dukenet.kit.logs import printable_database_url
from dukenet.kit.netguard import EgressPolicy, guarded_client
from dukenet.kit.openapi import declare_implied_errors
from dukenet.kit.secrets import SecretBox
from dukenet.kit.state import AppState
from dukenet.learning.serving import ChampionCache
from dukenet.learning.trainer import Trainer
from dukenet.ledger import service as ledger_service
from dukenet.migrate import upgrade
from dukenet.monitoring.api import metrics_router
from dukenet.monitoring.health import health_router
from dukenet.monitoring.metrics import Metrics
from dukenet.runners.background import RunnerThread
from dukenet.runners.base import Executor
from dukenet.runners.llm import LLMExecutor
from dukenet.runners.local import LocalExecutor
from dukenet.runners.replay import ReplayExecutor
from dukenet.runners.worker import Runner
from dukenet.tasks.sweeper import Sweeper
from dukenet.webui import default_dist_dir, mount_web_ui

log = structlog.get_logger(__name__)
access_log = structlog.get_logger("dukenet.access")


def build_executors(
    client: httpx.AsyncClient, secrets: SecretBox | None = None
) -> Mapping[AgentKind, Executor]:
    """Return the executors an automatic runner uses, by agent kind (``secrets`` decrypts the
    API keys stored with ``llm`` agents)."""
    return {
        AgentKind.LLM: LLMExecutor(client, secrets=secrets),
        AgentKind.REPLAY: ReplayExecutor(),
        AgentKind.LOCAL: LocalExecutor(),
    }


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return the DukeNET API; its lifespan migrates the database (``auto_migrate``), opens
    the engine and starts ``embedded_runners`` runners and the trainer in-process."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.resolved_database_url
        login_limiter = LoginRateLimiter.from_settings(settings)  # fails fast on a bad limit
        if settings.auto_migrate:
            await asyncio.to_thread(
                functools.partial(upgrade, url, pooler=settings.database_pooler)
            )
        engine = create_engine(url, pooler=settings.database_pooler)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            await ledger_service.ensure_system_accounts(session)
            await session.commit()
        state = AppState(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            tokens=TokenCodec(
                settings.resolved_jwt_secret(),
                algorithm=settings.jwt_algorithm,
                ttl_s=settings.access_token_ttl_s,
            ),
            hasher=password_hasher(),
            champion=ChampionCache(),
            metrics=Metrics(),
            login_limiter=login_limiter,
            storage=storage_from_settings(settings),
        )
        app.state.dukenet = state
        stop = asyncio.Event()
        workers: list[asyncio.Task[None]] = []
        hub = TaskEventHub(
            sessionmaker, poll_s=settings.events_poll_s, redis_url=settings.redis_url
        )
        app.state.task_events = hub
        workers.append(asyncio.create_task(hub.run(stop)))
        if settings.redis_url:  # a streamed answer reaches the gateway request in any process
            workers.append(asyncio.create_task(state.relay.run_fanout(settings.redis_url, stop)))
        # the bell rings in the other processes too (Redis, else PostgreSQL LISTEN/NOTIFY)
        started = bell_fanout.start_fanout(state.bell, settings, stop)
        app.state.bell_fanout = started[0] if started is not None else None
        if started is not None:
            workers.append(started[1])
        egress = EgressPolicy.from_settings(settings)
        async with guarded_client(egress, timeout=settings.llm_timeout_s) as client:
            executors = build_executors(client, SecretBox.from_settings(settings))
            runner_thread: RunnerThread | None = None
            if settings.embedded_runners and settings.embedded_runners_thread:
                # their own thread and loop: request handlers cannot starve them
                runner_thread = RunnerThread(
                    settings,
                    build_executors,
                    count=settings.embedded_runners,
                    bell=state.bell,
                    relay=state.relay,
                )
                await runner_thread.start()
            else:
                for i in range(settings.embedded_runners):
                    runner = Runner(
                        sessionmaker,
                        settings,
                        executors,
                        name=f"embedded-{i}",
                        storage=state.storage,
                        bell=state.bell,
                        relay=state.relay,
                    )
                    workers.append(asyncio.create_task(runner.run_forever(stop)))
            if settings.embedded_sweeper:
                sweeper = Sweeper(sessionmaker, settings)
                workers.append(asyncio.create_task(sweeper.run_forever(stop)))
            if settings.embedded_judge:
                judge = Judge(sessionmaker, settings, executors[AgentKind.LLM])
                workers.append(asyncio.create_task(judge.run_forever(stop)))
            if settings.embedded_trainer:
                workers.append(
                    asyncio.create_task(Trainer(sessionmaker, settings).run_forever(stop))
                )
            if settings.embedded_webhooks:  # webhook targets obey the same egress policy
                dispatcher = webhooks.Dispatcher(sessionmaker, settings, client)
                workers.append(asyncio.create_task(dispatcher.run_forever(stop)))
            log.info(
                "api ready",
                database=printable_database_url(url),
                embedded_runners=settings.embedded_runners,
                runners_thread=runner_thread is not None,
                trainer=settings.embedded_trainer,
                sweeper=settings.embedded_sweeper,
                judge=settings.embedded_judge,
                webhooks=settings.embedded_webhooks,
                redis=bool(settings.redis_url),
                bell=bell_fanout.transport_kind(settings),
            )
            try:
                yield
            finally:
                log.info("api stopping")
                stop.set()
                if runner_thread is not None:
                    await runner_thread.stop()
                await asyncio.gather(*workers, return_exceptions=True)
        await state.login_limiter.close()
        await engine.dispose()

    app = FastAPI(
        dependencies=[Depends(note_route)],
        title="DukeNET",
        version=__version__,
        description="A self-improving AI agent marketplace. Money is in satoshis.",
        lifespan=lifespan,
        docs_url=None,  # kit/docs.py serves /docs offline (no CDN); no ReDoc
        redoc_url=None,
    )
    hardening.install(app, settings)  # before the routers: its dependency reaches every route
    offline_docs.install(app)

    @app.exception_handler(DukenetError)
    async def _domain_error(request: Request, exc: DukenetError) -> JSONResponse:
        headers = None
        if isinstance(exc, ServiceUnavailable):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(DBAPIError)
    async def _transient_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if is_unavailable(exc):
            return await _unavailable(request, exc)
        if hardening.is_data_error(exc):  # out of range, NUL in text: the client's value
            return hardening.data_error_response()
        if not is_transient(exc):
            raise exc
        return await _domain_error(request, ServiceUnavailable("the database is busy; retry"))

    @app.exception_handler(OSError)
    @app.exception_handler(PoolTimeout)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database unreachable (refused, dropped, timed out): 503, and the pool reconnects
        # (pre-ping) once it is back. Only the error's type is logged: never SQL parameters.
        if not is_unavailable(exc):
            raise exc
        orig = getattr(exc, "orig", None)
        log.warning("database unavailable", error=type(orig or exc).__name__)
        return await _domain_error(
            request, ServiceUnavailable("the database is unavailable; retry shortly")
        )

    @app.exception_handler(IntegrityError)
    async def _integrity_error(request: Request, exc: IntegrityError) -> JSONResponse:
        # the constraint only: the driver's message quotes the row's values (hashes, emails)
        cause = getattr(exc.orig, "__cause__", None)
        log.warning("integrity error", constraint=getattr(cause, "constraint_name", None))
        return JSONResponse({"detail": "conflicting concurrent change; retry"}, status_code=409)

    app.include_router(api_router())
    gateway_api.install(app)  # /v1, OpenAI-compatible
    app.include_router(metrics_router)
    app.include_router(health_router)
    declare_implied_errors(app)
    app.add_middleware(RequestMetricsMiddleware, access_log=settings.access_log)
    if settings.web_ui:  # keep last: its catch-all GET route must come after every other route
        mount_web_ui(app, settings.web_dist_dir or default_dist_dir())
    return app


class RequestMetricsMiddleware:
    """Counts requests by method, route template and status (pure ASGI, no body buffering);
    with ``access_log``, logs one line a request: method, path (never the query string, which
    may carry a token), route, status, duration in ms and the client's address."""

    def __init__(self, app: ASGIApp, *, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status_code = 500
        started = time.perf_counter()
        # Routing happens in copies of the scope; a shared dict brings the route back out.
        slot: dict[str, str] = {}
        scope[ROUTE_SLOT] = slot

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = str(slot.get("path", "unmatched"))
            state: AppState | None = getattr(scope["app"].state, "dukenet", None)
            if state is not None:
                state.metrics.requests.labels(scope["method"], route, str(status_code)).inc()
            if self.access_log:
                client = scope.get("client")
                access_log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    route=route,
                    status=status_code,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                    client=client[0] if client else None,
                )


ROUTE_SLOT = "dukenet.route"


async def note_route(request: Request) -> None:
    """Record the matched route's path template for the request metrics (an app dependency)."""
    slot = request.scope.get(ROUTE_SLOT)
    route = request.scope.get("route")
    if isinstance(slot, dict) and route is not None:
        slot["path"] = _full_template(request.scope["path"], route)


def _full_template(path: str, route: object) -> str:
    # Routes of included routers know only their own part of the path (e.g. "/tasks/{task_id}");
    # the prefix is what precedes the shortest suffix their pattern matches.
    template = str(getattr(route, "path", "unmatched"))
    pattern = getattr(route, "path_regex", None)
    if pattern is None:
        return template
    for k, char in enumerate(path):
        if char == "/" and pattern.fullmatch(path[k:]):
            return path[:k] + template
    return template
