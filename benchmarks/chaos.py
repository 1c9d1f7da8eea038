"""Chaos under load: API processes and runners killed with SIGKILL while buyers submit tasks.

Usage: ``python benchmarks/chaos.py [--tasks 200] [--apis 2] [--runners 3] [--kills 6]
[--postgres-url URL] [--seed 0] [--json PATH]``

Starts a fresh PostgreSQL database (created on the server at ``--postgres-url``, dropped at the
end), ``--apis`` ``dukenet serve`` processes (no embedded runners; the first one runs the sweeper
and the trainer) and ``--runners`` ``dukenet runner`` processes, registers the RouterBench models
as replay agents (the runners hold RouterBench) and has buyers submit ``--tasks`` RouterBench
prompts through the API processes in turn, each with an idempotency key and retried on any
failure (a killed API process, a 503). Meanwhile it kills a random runner or API process with
SIGKILL ``--kills`` times at random moments and restarts it, and kills the trainer process once
mid-training. At the end it waits until no task is open and counts:

- ``tasks``: distinct tasks created (one per idempotency key: a retried submit is not a second);
- ``kills``: processes killed (runners, API processes, the trainer);
- ``lost``: submitted keys with no task, plus tasks still open (assigned, executing) at the end;
- ``double_paid``: tasks whose escrow was settled (paid out or refunded) more than once, or paid
  out and refunded, from the ledger;
- ``unsettled``: finished tasks whose escrow holds money (neither paid nor refunded);
- ``ledger_ok``: ``dukenet ledger check`` exits 0;
- ``trainer``: the killed training run's status afterwards and whether the champion changed.

Prints the counts as JSON (``--json`` writes them too); asserts nothing (``tests/faults`` does).
The process helpers (``free_port``, ``server_env``, ``Process``) serve the fault tests too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(database_url: str, var_dir: Path, **overrides: str) -> dict[str, str]:
    """Return the environment of a DukeNET process on ``database_url``: this process's
    environment without its ``DUKENET_`` variables, a fixed JWT secret and Fernet key shared by
    every process started with the same ``var_dir``, no embedded runners, sweeper or trainer
    (``overrides``, without the prefix, turn them on), one BLAS thread."""
    var_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUKENET_")}
    secret = var_dir / "jwt_secret"
    if not secret.exists():
        secret.write_text(secrets.token_urlsafe(48))
    env.update(
        {
            "DUKENET_DATABASE_URL": database_url,
            "DUKENET_VAR_DIR": str(var_dir),
            "DUKENET_JWT_SECRET": secret.read_text(),
            "DUKENET_EMBEDDED_RUNNERS": "0",
            "DUKENET_EMBEDDED_SWEEPER": "false",
            "DUKENET_EMBEDDED_TRAINER": "false",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
    )
    env.update({f"DUKENET_{k.upper()}": v for k, v in overrides.items()})
    return env


@dataclass
class Process:
    """One ``python -m dukenet ARGS`` child process that can be killed and started again."""

    args: list[str]
    env: Mapping[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start it (its output is appended to ``log``)."""
        self._log_file = self.log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "dukenet", *self.args],
            env=dict(self.env),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """SIGKILL it and reap it: no shutdown code runs."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()
        self._close_log()

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM it and wait (SIGKILL after ``timeout_s``)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @property
    def alive(self) -> bool:
        """Whether it is running."""
        return self.popen is not None and self.popen.poll() is None


def wait_until_serving(base_url: str, process: Process, timeout_s: float = 300.0) -> None:
    """Wait until ``base_url/openapi.json`` answers 200.

    Raises:
        RuntimeError: the process exited, or it did not answer within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if not process.alive:
                raise RuntimeError(
                    f"dukenet {' '.join(process.args)} exited; see {process.log}:\n"
                    + process.log.read_text()[-3000:]
                )
            try:
                if client.get(f"{base_url}/openapi.json").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"{base_url} did not answer within {timeout_s:g} s")


@contextmanager
def served(
    database_url: str, var_dir: Path, name: str = "api", **overrides: str
) -> Iterator[tuple[str, Process]]:
    """Run ``dukenet serve`` on a free port for the block; yield its base URL and process."""
    port = free_port()
    process = Process(
        ["serve", "--port", str(port)],
        server_env(database_url, var_dir, **overrides),
        var_dir / f"{name}.log",
    )
    process.start()
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_serving(base_url, process)
        yield base_url, process
    finally:
        process.stop()


async def _admin_sql(server_url: str, sql: str) -> None:
    from sqlalchemy import text

    from dukenet.db import create_engine

    engine = create_engine(server_url)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(sql))
    await engine.dispose()


@contextmanager
def fresh_postgres_database(server_url: str = DEFAULT_POSTGRES_URL) -> Iterator[str]:
    """Create a migrated database on the PostgreSQL server at ``server_url`` for the block;
    yield its URL and drop it afterwards."""
    from sqlalchemy.engine import make_url

    from dukenet.migrate import upgrade

    name = f"dukenet_chaos_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin_sql(server_url, f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(_admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def create_admin(database_url: str, email: str, password: str) -> None:
    """Register an admin straight in the database (as ``dukenet users create-admin`` does)."""
    from dukenet.accounts import service as accounts_service
    from dukenet.accounts.models import UserRole
    from dukenet.db import create_engine, create_sessionmaker

    async def work() -> None:
        engine = create_engine(database_url)
        async with create_sessionmaker(engine)() as session:
            await accounts_service.register(
                session,
                accounts_service.password_hasher(),
                email=email,
                password=password,
                role=UserRole.ADMIN,
            )
            await session.commit()
        await engine.dispose()

    asyncio.run(work())


@dataclass(frozen=True)
class ChaosConfig:
    """How big a chaos run is and how hard it is shaken (``main``'s options)."""

    tasks: int = 200
    apis: int = 2
    runners: int = 3
    kills: int = 6
    buyers: int = 3
    submitters: int = 4
    agents: int = 4
    seed: int = 0
    postgres_url: str = DEFAULT_POSTGRES_URL
    work_dir: Path | None = None
    finish_timeout_s: float = 120.0


ADMIN_EMAIL = "chaos-admin@example.com"
OPEN_STATUSES = ("created", "assigned", "executing", "delivered")
_CHAOS_SETTINGS = {
    # a killed runner's lease expires fast and its task is retried at once
    "lease_s": "3",
    "retry_backoff_s": "0.2",
    "max_attempts": "3",
    "runner_poll_s": "0.1",
    "dispute_window_s": "0",
    "sweep_interval_s": "0.5",
    # a killed trainer's run is reaped as failed after 8 s and its trigger retried
    "training_timeout_s": "8",
    "trainer_poll_s": "0.2",
    "retrain_every_n": "25",
    "retrain_triggers": '["outcomes"]',
    # a long promotion bootstrap keeps each training running long enough to be killed in it
    "promotion_bootstrap": "100000",
}


@dataclass
class Market:
    """The processes of one chaos run and what is needed to reach them."""

    database_url: str
    var_dir: Path
    apis: list[tuple[str, Process]]
    runners: list[Process]
    trainer: Process
    rng: random.Random
    kills: dict[str, int] = field(default_factory=lambda: {"runner": 0, "api": 0, "trainer": 0})

    def api_urls(self) -> list[str]:
        """The base URLs of the API processes (alive or not)."""
        return [url for url, _ in self.apis]


def _process(market_env: Mapping[str, str], var_dir: Path, name: str, args: list[str]) -> Process:
    process = Process(args, market_env, var_dir / f"{name}.log")
    process.start()
    return process


async def _wait_serving(base_url: str, process: Process) -> None:
    await asyncio.to_thread(wait_until_serving, base_url, process)


async def _request(
    market: Market, method: str, path: str, *, headers: Mapping[str, str], **kwargs: Any
) -> httpx.Response:
    """Send one request to the API processes in turn until one answers below 500 (a killed
    process refuses, a restarting one is not up yet); give up after 60 s."""
    deadline = time.monotonic() + 60
    urls = market.api_urls()
    start = market.rng.randrange(len(urls))
    attempt = 0
    async with httpx.AsyncClient(timeout=30) as http:
        while True:
            url = urls[(start + attempt) % len(urls)]
            attempt += 1
            try:
                response = await http.request(
                    method, f"{url}/api/v2{path}", headers=dict(headers), **kwargs
                )
                if response.status_code < 500:
                    return response
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path}: no API process answered for 60 s")
            await asyncio.sleep(0.1)


def _ok(response: httpx.Response) -> Any:
    if response.is_error:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


async def _setup(
    market: Market, config: ChaosConfig
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Register the replay agents and the credited buyers; return admin and buyer headers."""
    from dukenet.learning.routerbench import routerbench_outcomes

    password = secrets.token_urlsafe(12)
    await asyncio.to_thread(create_admin, market.database_url, ADMIN_EMAIL, password)
    login = {"email": ADMIN_EMAIL, "password": password}
    token = _ok(await _request(market, "POST", "/auth/login", headers={}, json=login))
    admin = {"Authorization": f"Bearer {token['access_token']}"}
    dataset = await asyncio.to_thread(routerbench_outcomes, "train")
    for model in dataset.agents[: config.agents]:
        body = {
            "name": f"chaos-{model.split('/')[-1]}",
            "kind": "replay",
            "base_price_sat": 1_000,
            "replay": {"dataset": "routerbench", "model": model},
        }
        _ok(await _request(market, "POST", "/agents", headers=admin, json=body))
    buyers = []
    for b in range(config.buyers):
        email = f"chaos-buyer{b}@example.com"
        user = _ok(
            await _request(
                market,
                "POST",
                "/auth/register",
                headers={},
                json={"email": email, "password": password, "role": "buyer"},
            )
        )
        _ok(
            await _request(
                market,
                "POST",
                f"/admin/users/{user['id']}/credit",
                headers=admin,
                json={"amount_sat": 10**10},
            )
        )
        token = _ok(
            await _request(
                market,
                "POST",
                "/auth/login",
                headers={},
                json={"email": email, "password": password},
            )
        )
        buyers.append({"Authorization": f"Bearer {token['access_token']}"})
    return admin, buyers


async def _submit_all(
    market: Market, config: ChaosConfig, buyers: list[dict[str, str]], prompts: list[str]
) -> dict[str, str | None]:
    """Submit every prompt once (an idempotency key each, retried until an API process takes
    it); return idempotency key -> task id."""
    created: dict[str, str | None] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(prompts)):
        queue.put_nowait(i)

    async def submitter() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            key = f"chaos-{config.seed}-{i}"
            created[key] = None
            body = {"description": prompts[i], "complexity": 1 + i % 5, "idempotency_key": key}
            response = await _request(
                market, "POST", "/tasks", headers=buyers[i % len(buyers)], json=body
            )
            created[key] = _ok(response)["id"]

    await asyncio.gather(*(submitter() for _ in range(config.submitters)))
    return created


async def _restart(market: Market, kind: str, index: int) -> None:
    if kind == "api":
        url, process = market.apis[index]
        process.start()
        await _wait_serving(url, process)
    elif kind == "runner":
        market.runners[index].start()
    else:
        market.trainer.start()


async def _chaos(market: Market, config: ChaosConfig, done: asyncio.Event) -> None:
    """Kill a random runner or API process ``config.kills`` times at random moments while the
    market works, restarting each after a random pause."""
    for _ in range(config.kills):
        await asyncio.sleep(market.rng.uniform(0.5, 3.0))
        kind = "api" if market.rng.random() < 0.4 else "runner"
        pool: list[Process] = [p for _, p in market.apis] if kind == "api" else list(market.runners)
        index = market.rng.randrange(len(pool))
        pool[index].kill()
        market.kills[kind] += 1
        _progress(f"killed {kind} {index}")
        await asyncio.sleep(market.rng.uniform(0.2, 2.0))
        await _restart(market, kind, index)
    done.set()


async def _kill_trainer_mid_training(market: Market, stop: asyncio.Event) -> dict[str, Any]:
    """SIGKILL the trainer the first time a training run is ``running``; restart it. Return the
    run's id and the champion version at that moment."""
    from sqlalchemy import select

    from dukenet.db import create_engine, create_sessionmaker
    from dukenet.learning.models import ModelAlias, TrainingRun

    engine = create_engine(market.database_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        while not stop.is_set():
            async with sessionmaker() as session:
                run = await session.scalar(
                    select(TrainingRun).where(TrainingRun.status == "running")
                )
                if run is not None:
                    market.trainer.kill()
                    market.kills["trainer"] += 1
                    _progress(f"killed the trainer during run {run.id}")
                    champion = await session.scalar(
                        select(ModelAlias.version).where(ModelAlias.name == "champion")
                    )
                    market.trainer.start()
                    return {"run_id": str(run.id), "champion_before": champion}
            await asyncio.sleep(0.02)
        return {}
    finally:
        await engine.dispose()


async def _account(market: Market, keys: dict[str, str | None]) -> dict[str, Any]:
    """Count tasks by status and check every escrow from the ledger (see the module doc)."""
    from sqlalchemy import func, select

    from dukenet.db import create_engine, create_sessionmaker
    from dukenet.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
    from dukenet.ledger.models import LedgerTransactionKind as Kind
    from dukenet.tasks.models import Task

    engine = create_engine(market.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            statuses = dict(
                (
                    await session.execute(select(Task.status, func.count()).group_by(Task.status))
                ).all()
            )
            settlements: dict[str, dict[str, int]] = {}
            rows = await session.execute(
                select(LedgerTransaction.task_id, LedgerTransaction.kind, func.count())
                .where(LedgerTransaction.kind.in_((Kind.ESCROW_RELEASE, Kind.ESCROW_REFUND)))
                .group_by(LedgerTransaction.task_id, LedgerTransaction.kind)
            )
            for task_id, kind, count in rows.all():
                settlements.setdefault(str(task_id), {})[str(kind)] = count
            balances = dict(
                (
                    await session.execute(
                        select(
                            LedgerAccount.name, func.coalesce(func.sum(LedgerEntry.amount_sat), 0)
                        )
                        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
                        .where(LedgerAccount.name.like("escrow:%"))
                        .group_by(LedgerAccount.name)
                    )
                ).all()
            )
            tasks = (await session.execute(select(Task.id, Task.status))).all()
    finally:
        await engine.dispose()
    double_paid = unsettled = unpaid = 0
    for task_id, status in tasks:
        kinds = settlements.get(str(task_id), {})
        if any(n > 1 for n in kinds.values()) or balances.get(f"escrow:{task_id}", 0) < 0:
            double_paid += 1
        if status not in OPEN_STATUSES and balances.get(f"escrow:{task_id}", 0) != 0:
            unsettled += 1
        if str(status) == "completed" and Kind.ESCROW_RELEASE.value not in kinds:
            unpaid += 1
    lost_keys = sum(1 for task_id in keys.values() if task_id is None)
    still_open = sum(n for status, n in statuses.items() if str(status) in OPEN_STATUSES)
    return {
        "tasks": len(tasks),
        "submitted": len(keys),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "lost": lost_keys + still_open,
        "double_paid": double_paid,
        "unsettled": unsettled,
        "completed_unpaid": unpaid,
    }


async def _wait_until_finished(market: Market, admin: dict[str, str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        open_tasks = 0
        for status in OPEN_STATUSES:
            page = _ok(
                await _request(
                    market, "GET", "/tasks", headers=admin, params={"status": status, "limit": 1}
                )
            )
            open_tasks += page["total"]
        if open_tasks == 0:
            return
        await asyncio.sleep(0.5)


async def _trainer_outcome(market: Market, killed: dict[str, Any]) -> dict[str, Any]:
    """Wait until the killed run is reaped; report its status and whether it made a version."""
    from sqlalchemy import func, select

    from dukenet.db import create_engine, create_sessionmaker
    from dukenet.learning.models import ModelVersion, TrainingRun

    if not killed:
        return {"killed": False}
    run_id = uuid.UUID(killed["run_id"])
    engine = create_engine(market.database_url)
    try:
        deadline = time.monotonic() + 60
        while True:
            async with create_sessionmaker(engine)() as session:
                status = await session.scalar(
                    select(TrainingRun.status).where(TrainingRun.id == run_id)
                )
                versions = await session.scalar(
                    select(func.count())
                    .select_from(ModelVersion)
                    .where(ModelVersion.run_id == run_id)
                )
            if str(status) != "running" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
    return {
        "killed": True,
        "run_status": str(status),
        "run_made_a_version": bool(versions),
        "champion_before_kill": killed["champion_before"],
    }


def _ledger_check(market: Market) -> bool:
    env = server_env(market.database_url, market.var_dir)
    done = subprocess.run(
        [sys.executable, "-m", "dukenet", "ledger", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode == 0


async def _run(market: Market, config: ChaosConfig) -> dict[str, Any]:
    from dukenet.learning.routerbench import routerbench_outcomes

    started = time.perf_counter()
    for url, process in market.apis:
        await _wait_serving(url, process)
    _progress(
        f"{len(market.apis)} API processes serving after {time.perf_counter() - started:.0f} s"
    )
    admin, buyers = await _setup(market, config)
    dataset = await asyncio.to_thread(routerbench_outcomes, "train")
    order = list(dataset.tasks)
    market.rng.shuffle(order)
    prompts = [t.prompt for t in order[: config.tasks]]
    chaos_done, trainer_stop = asyncio.Event(), asyncio.Event()
    trainer_kill = asyncio.create_task(_kill_trainer_mid_training(market, trainer_stop))
    chaos = asyncio.create_task(_chaos(market, config, chaos_done))
    keys = await _submit_all(market, config, buyers, prompts)
    _progress(f"{len(keys)} tasks submitted after {time.perf_counter() - started:.0f} s")
    await chaos
    await _wait_until_finished(market, admin, config.finish_timeout_s)
    _progress(f"no task open after {time.perf_counter() - started:.0f} s")
    # give the trainer a last chance to be caught mid-run, then stop looking
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(trainer_kill), timeout=20)
    trainer_stop.set()
    killed = await trainer_kill
    counts = await _account(market, keys)
    counts["kills"] = sum(market.kills.values())
    counts["kills_by_process"] = dict(market.kills)
    counts["trainer"] = await _trainer_outcome(market, killed)
    status = _ok(await _request(market, "GET", "/model/status", headers=admin))
    counts["trainer"]["champion_after"] = status["champion_version"]
    counts["ledger_ok"] = await asyncio.to_thread(_ledger_check, market)
    counts["wall_s"] = round(time.perf_counter() - started, 1)
    return counts


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_chaos(config: ChaosConfig) -> dict[str, Any]:
    """Run one chaos experiment (see the module doc) and return its counts."""
    work = config.work_dir or Path(tempfile.mkdtemp(prefix="dukenet-chaos-"))
    var_dir = work / "var"
    with fresh_postgres_database(config.postgres_url) as database_url:
        env_settings = dict(_CHAOS_SETTINGS)
        apis = []
        for i in range(config.apis):
            port = free_port()
            extra = {"embedded_sweeper": "true"} if i == 0 else {}
            env = server_env(database_url, var_dir, **env_settings, **extra)
            apis.append(
                (
                    f"http://127.0.0.1:{port}",
                    _process(env, var_dir, f"api{i}", ["serve", "--port", str(port)]),
                )
            )
        env = server_env(database_url, var_dir, **env_settings)
        runners = [
            _process(env, var_dir, f"runner{i}", ["runner", "--name", f"chaos-{i}"])
            for i in range(config.runners)
        ]
        trainer = _process(env, var_dir, "trainer", ["trainer"])
        market = Market(database_url, var_dir, apis, runners, trainer, random.Random(config.seed))
        try:
            return asyncio.run(_run(market, config))
        finally:
            for process in [*(p for _, p in apis), *runners, trainer]:
                process.stop()


def main() -> None:
    """Parse the options, run the chaos and print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--apis", type=int, default=2)
    parser.add_argument("--runners", type=int, default=3)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = run_chaos(
        ChaosConfig(
            tasks=args.tasks,
            apis=args.apis,
            runners=args.runners,
            kills=args.kills,
            seed=args.seed,
            postgres_url=args.postgres_url,
        )
    )
    text = json.dumps(counts, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
