"""Load test over HTTP on loopback: the API's submissions/s and the market's completed tasks/s.

Usage::

    python benchmarks/load.py [--database-url URL | --postgres SERVER_URL] [--api-processes 1]
        [--concurrency 1,8,32] [--seconds 10] [--embedded-runners 2] [--no-pgbench]
        [--runners-on thread,loop] [--e2e-only]

It starts its own servers (``python -m dukenet serve`` on free loopback ports, ``--api-processes``
of them on one database; the load generator spreads requests over them round robin), migrates
a fresh database (a SQLite file in a temporary directory by default; with ``--postgres`` a
scratch database on that server, dropped at the end), and stops everything when done. Every
phase is bounded by ``--seconds``. Per concurrency level it prints:

* ``api``: buyers submit tasks (``POST /tasks``) while as many runner coroutines claim them
  (``POST /runner/claim``), post a result (``/result``) and the buyer accepts it (``/accept``,
  the settlement): submissions/s, settled tasks/s and p50/p95/p99 of each call in ms;
* ``get``: ``GET /tasks/{id}`` requests/s and latency;
* ``e2e`` (``--embedded-runners`` > 0): buyers submit RouterBench prompts to replay agents while
  the servers' own embedded runners execute them: submissions/s and completed tasks/s (tasks
  that reached a final state, counted after the submit window and a drain of the same length);

and, beside them on the same PostgreSQL server in the same run, ``pgbench``'s TPC-B-like and
single-INSERT transactions per second at the same client counts (``--no-pgbench`` skips it;
nothing for SQLite). Asserts nothing; figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import UserRole
from dukenet.db import create_engine, create_sessionmaker
from dukenet.learning.routerbench import load_routerbench
from dukenet.migrate import upgrade

PASSWORD = "load-test-password"
ADMIN_EMAIL = "load-admin@example.com"
MODELS = ("gpt-3.5-turbo-1106", "mistral-7b-chat", "gpt-4-1106-preview")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Latencies:
    """Wall-clock latencies of one kind of call, in ms."""

    values: list[float] = field(default_factory=list)
    errors: int = 0

    def summary(self) -> str:
        """Return ``p50/p95/p99 ms`` (and the error count, if any)."""
        if not self.values:
            return "-"
        ordered = sorted(self.values)

        def pct(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        errors = f" ({self.errors} errors)" if self.errors else ""
        return f"{statistics.median(ordered):.0f}/{pct(0.95):.0f}/{pct(0.99):.0f}{errors}"


class Servers:
    """``api_processes`` ``dukenet serve`` processes on one database, on loopback ports."""

    def __init__(self, env: dict[str, str], api_processes: int) -> None:
        self.urls: list[str] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        for _ in range(api_processes):
            port = _free_port()
            self.urls.append(f"http://127.0.0.1:{port}/api/v2")
            self._processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "dukenet", "serve", "--port", str(port)],
                    env={**env, "DUKENET_AUTO_MIGRATE": "false"},
                    stdout=subprocess.DEVNULL,
                )
            )
        self._next = itertools.cycle(self.urls)

    def url(self) -> str:
        """Return the next server's API base URL (round robin)."""
        return next(self._next)

    async def wait(self, timeout_s: float = 600.0) -> None:
        """Return once every server answers (a loaded machine imports slowly).

        Raises:
            RuntimeError: a server exited, or did not answer within ``timeout_s`` seconds.
        """
        async with httpx.AsyncClient() as client:
            for url, process in zip(self.urls, self._processes, strict=True):
                for _ in range(int(timeout_s * 10)):
                    if process.poll() is not None:
                        raise RuntimeError(f"dukenet serve exited with {process.returncode}")
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get(url.removesuffix("/api/v2") + "/docs")).is_success:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError(f"dukenet serve did not start within {timeout_s:.0f} s")

    def stop(self) -> None:
        """Terminate every server and wait for it."""
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _ok(response: httpx.Response) -> Any:
    if response.is_error:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


async def _create_admin(database_url: str) -> None:
    engine = create_engine(database_url)
    async with create_sessionmaker(engine)() as session:
        await accounts_service.register(
            session,
            accounts_service.password_hasher(),
            email=ADMIN_EMAIL,
            password=PASSWORD,
            role=UserRole.ADMIN,
        )
        await session.commit()
    await engine.dispose()


async def _login(client: httpx.AsyncClient, url: str, email: str) -> dict[str, str]:
    body = _ok(await client.post(f"{url}/auth/login", json={"email": email, "password": PASSWORD}))
    return {"Authorization": f"Bearer {body['access_token']}"}


async def _setup(
    client: httpx.AsyncClient, servers: Servers, buyers: int
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Register the replay agents and ``buyers`` credited buyers; return the headers."""
    url = servers.url()
    admin = await _login(client, url, ADMIN_EMAIL)
    for model in MODELS:
        _ok(
            await client.post(
                f"{url}/agents",
                headers=admin,
                json={
                    "name": f"load-{model}",
                    "kind": "replay",
                    "base_price_sat": 1_000,
                    "replay": {"dataset": "routerbench", "model": model},
                },
            )
        )
    headers = []
    for _ in range(buyers):
        email = f"buyer-{uuid.uuid4().hex[:10]}@example.com"
        user = _ok(
            await client.post(
                f"{url}/auth/register",
                json={"email": email, "password": PASSWORD, "role": "buyer"},
            )
        )
        _ok(
            await client.post(
                f"{url}/admin/users/{user['id']}/credit",
                headers=admin,
                json={"amount_sat": 10**13},
            )
        )
        headers.append(await _login(client, url, email))
    return admin, headers


async def _timed(latencies: Latencies, request: Any) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response: httpx.Response = await request
    except httpx.HTTPError:
        latencies.errors += 1
        return None
    if response.is_error:
        latencies.errors += 1
        return None
    latencies.values.append((time.perf_counter() - started) * 1000)
    return response


async def api_phase(
    client: httpx.AsyncClient,
    servers: Servers,
    admin: dict[str, str],
    buyers: list[dict[str, str]],
    concurrency: int,
    seconds: float,
) -> str:
    """Submit, claim, post results and accept at ``concurrency`` for ``seconds``."""
    submit, claim, result, settle = Latencies(), Latencies(), Latencies(), Latencies()
    delivered: asyncio.Queue[tuple[str, dict[str, str]]] = asyncio.Queue()
    owner: dict[str, dict[str, str]] = {}
    deadline = time.perf_counter() + seconds
    submitted = settled = 0

    async def buyer(k: int) -> None:
        nonlocal submitted
        headers = buyers[k % len(buyers)]
        for i in itertools.count():
            if time.perf_counter() >= deadline:
                return
            body = {"description": f"Load test task {k}-{i}: add two numbers.", "complexity": 3}
            response = await _timed(
                submit, client.post(f"{servers.url()}/tasks", headers=headers, json=body)
            )
            if response is not None:
                owner[response.json()["id"]] = headers
                submitted += 1

    async def runner(k: int) -> None:
        while time.perf_counter() < deadline + seconds:
            response = await _timed(
                claim,
                client.post(
                    f"{servers.url()}/runner/claim", headers=admin, json={"runner": f"load-{k}"}
                ),
            )
            lease = response.json() if response is not None else None
            if not lease:
                if time.perf_counter() >= deadline:
                    return
                await asyncio.sleep(0.01)
                continue
            done = await _timed(
                result,
                client.post(
                    f"{servers.url()}/runner/tasks/{lease['task_id']}/result",
                    headers=admin,
                    json={
                        "lease_token": lease["lease_token"],
                        "idempotency_key": f"load-{lease['task_id']}",
                        "text": "4",
                        "success": True,
                    },
                ),
            )
            if done is not None:
                await delivered.put((lease["task_id"], owner.get(lease["task_id"], {})))

    async def settler() -> None:
        nonlocal settled
        while True:
            task_id, headers = await delivered.get()
            if await _timed(
                settle, client.post(f"{servers.url()}/tasks/{task_id}/accept", headers=headers)
            ):
                settled += 1
            delivered.task_done()

    started = time.perf_counter()
    settlers = [asyncio.create_task(settler()) for _ in range(concurrency)]
    await asyncio.gather(
        *(buyer(k) for k in range(concurrency)), *(runner(k) for k in range(concurrency))
    )
    await delivered.join()
    elapsed = time.perf_counter() - started
    for task in settlers:
        task.cancel()
    return (
        f"api  c={concurrency:<3} submit {submitted / seconds:7.1f}/s  settled "
        f"{settled / elapsed:7.1f}/s  p50/p95/p99 ms: submit {submit.summary()}  claim "
        f"{claim.summary()}  result {result.summary()}  settle {settle.summary()}"
    )


async def get_phase(
    client: httpx.AsyncClient,
    servers: Servers,
    buyer: dict[str, str],
    concurrency: int,
    seconds: float,
) -> str:
    """Read one of the buyer's tasks (``GET /tasks/{id}``) at ``concurrency`` for ``seconds``."""
    page = _ok(await client.get(f"{servers.url()}/tasks?limit=1", headers=buyer))
    task_id = page["items"][0]["id"]
    latencies = Latencies()
    deadline = time.perf_counter() + seconds

    async def reader() -> None:
        while time.perf_counter() < deadline:
            await _timed(latencies, client.get(f"{servers.url()}/tasks/{task_id}", headers=buyer))

    await asyncio.gather(*(reader() for _ in range(concurrency)))
    return (
        f"get  c={concurrency:<3} {len(latencies.values) / seconds:7.1f}/s  p50/p95/p99 ms "
        f"{latencies.summary()}"
    )


async def e2e_phase(
    client: httpx.AsyncClient,
    servers: Servers,
    admin: dict[str, str],
    buyers: list[dict[str, str]],
    prompts: Iterator[str],
    concurrency: int,
    seconds: float,
) -> str:
    """Submit RouterBench prompts for ``seconds``; count the tasks the embedded runners finish
    within the window and a drain of the same length."""
    submit = Latencies()
    ids: list[str] = []
    before = await _finished(client, servers, admin)
    deadline = time.perf_counter() + seconds

    async def buyer(k: int) -> None:
        headers = buyers[k % len(buyers)]
        while time.perf_counter() < deadline:
            body = {"description": next(prompts), "complexity": 3}
            response = await _timed(
                submit, client.post(f"{servers.url()}/tasks", headers=headers, json=body)
            )
            if response is not None:
                ids.append(response.json()["id"])

    started = time.perf_counter()
    await asyncio.gather(*(buyer(k) for k in range(concurrency)))
    await asyncio.sleep(max(0.0, started + 2 * seconds - time.perf_counter()))
    finished = await _finished(client, servers, admin) - before
    return (
        f"e2e  c={concurrency:<3} submit {len(ids) / seconds:7.1f}/s  completed "
        f"{finished / seconds:7.1f}/s ({finished} of {len(ids)} finished within {2 * seconds:.0f}"
        f" s of the first submission)  submit p50/p95/p99 ms {submit.summary()}"
    )


async def _finished(client: httpx.AsyncClient, servers: Servers, admin: dict[str, str]) -> int:
    """Return how many tasks are in a final (or delivered) state."""
    total = 0
    for status in ("completed", "failed", "delivered"):
        page = _ok(
            await client.get(f"{servers.url()}/tasks?status={status}&limit=1", headers=admin)
        )
        total += int(page["total"])
    return total


def pgbench(database_url: str, concurrency: int, seconds: float) -> str:
    """Run pgbench's TPC-B-like and a single-INSERT script on the same server; return tps."""
    url = make_url(database_url)
    args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or ""]
    db = url.database or "postgres"
    subprocess.run(["pgbench", *args, "-i", "-q", "-s", "1", db], check=True, capture_output=True)
    figures = []
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) ")
        script.write("VALUES (1, 1, 1, 1, CURRENT_TIMESTAMP);\n")
    for name, extra in (("tpcb-like", []), ("single-insert", ["-f", script.name])):
        out = subprocess.run(
            [
                "pgbench",
                *args,
                "-c",
                str(concurrency),
                "-j",
                "2",
                "-T",
                str(int(seconds)),
                *extra,
                db,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        found = re.search(r"tps = ([0-9.]+)", out)
        figures.append(f"{name} {float(found.group(1)) if found else float('nan'):.0f} tps")
    os.unlink(script.name)
    return f"pgbench c={concurrency:<3} " + "  ".join(figures)


@contextlib.asynccontextmanager
async def _database(args: argparse.Namespace, tmp: Path) -> AsyncIterator[str]:
    if args.database_url:
        yield args.database_url
        return
    if not args.postgres:
        yield f"sqlite+aiosqlite:///{tmp}/load.db"
        return
    name = f"dukenet_load_{secrets.token_hex(5)}"
    admin = create_engine(args.postgres)
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def run(args: argparse.Namespace) -> None:
    """Run every phase at every concurrency level and print the figures."""
    levels = [int(c) for c in args.concurrency.split(",")]
    prompts = itertools.cycle(load_routerbench("train").prompts)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        async with _database(args, tmp) as url:
            await asyncio.to_thread(upgrade, url)
            await _create_admin(url)
            env = {
                **os.environ,
                "OMP_NUM_THREADS": "1",
                "DUKENET_DATABASE_URL": url,
                "DUKENET_VAR_DIR": str(tmp / "var"),
                "DUKENET_JWT_SECRET": secrets.token_urlsafe(32),
                "DUKENET_EMBEDDED_TRAINER": "false",
                "DUKENET_RETRY_BACKOFF_S": "0",
                "DUKENET_LOGIN_RATE_LIMIT_PER_IP": "1000/minute",
                # one buyer per concurrent client registers from 127.0.0.1
                "DUKENET_REGISTER_RATE_LIMIT_PER_IP": "1000/minute",
            }
            print(
                f"database {make_url(url).get_backend_name()}, {args.api_processes} API process(es)"
            )
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                api_env = {
                    **env,
                    "DUKENET_EMBEDDED_RUNNERS": "0",
                    "DUKENET_DISPUTE_WINDOW_S": "3600",
                }
                servers = Servers(api_env, args.api_processes)
                try:
                    await servers.wait()
                    admin, buyers = await _setup(client, servers, max(levels))
                    for c in levels if not args.e2e_only else []:
                        print(await api_phase(client, servers, admin, buyers, c, args.seconds))
                        print(await get_phase(client, servers, buyers[0], c, args.seconds))
                finally:
                    servers.stop()
                for mode in args.runners_on.split(",") if args.embedded_runners > 0 else []:
                    e2e_env = {
                        **env,
                        "DUKENET_EMBEDDED_RUNNERS": str(args.embedded_runners),
                        # thread: their own thread and loop; loop: the API's (issue #15's before)
                        "DUKENET_EMBEDDED_RUNNERS_THREAD": str(mode == "thread").lower(),
                        "DUKENET_DISPUTE_WINDOW_S": "0",
                        "DUKENET_RUNNER_POLL_S": "0.05",
                    }
                    servers = Servers(e2e_env, args.api_processes)
                    try:
                        await servers.wait()
                        print(f"embedded runners on: {mode}")
                        for c in levels:
                            print(
                                await e2e_phase(
                                    client, servers, admin, buyers, prompts, c, args.seconds
                                )
                            )
                    finally:
                        servers.stop()
            if make_url(url).get_backend_name() == "postgresql" and args.pgbench:
                for c in levels:
                    print(await asyncio.to_thread(pgbench, url, c, args.seconds))


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--database-url", help="an existing database (migrated here)")
    target.add_argument(
        "--postgres", help="a PostgreSQL server URL: a scratch database is created and dropped"
    )
    parser.add_argument("--api-processes", type=int, default=1)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--embedded-runners", type=int, default=2)
    parser.add_argument(
        "--runners-on",
        default="thread",
        help="where the embedded runners run, comma-separated: thread (their own, the "
        "default) and/or loop (the API's event loop, as before issue #15)",
    )
    parser.add_argument("--e2e-only", action="store_true", help="skip the api and get phases")
    parser.add_argument("--no-pgbench", dest="pgbench", action="store_false")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
