"""What one ``POST /api/v2/tasks`` and one ``GET /api/v2/tasks/{id}`` cost, in process.

Usage: ``python benchmarks/request_cost.py [--database-url URL] [--requests 300]``

Runs the app in this process on an httpx ASGI transport (no sockets, no server), so the figures
are the app's own cost: milliseconds of wall time per request at concurrency 1 and the SQL
statements and transactions (``BEGIN``s) each request sends to the database. The default
database is a fresh SQLite file in a temporary directory; a PostgreSQL URL is used as given
(the tables must be migrated; rows are added, nothing is dropped). 11 replay agents, no
champion (routing is uniform until the first model). Prints figures; asserts nothing.
Profile the same loop with ``py-spy record -o profile.svg -- python benchmarks/request_cost.py``
(``docs/profiling.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import httpx
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import event

from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import UserRole
from dukenet.config import Settings
from dukenet.kit.state import AppState
from dukenet.main import create_app
from dukenet.migrate import upgrade

PASSWORD = "correct horse battery"


class StatementCounter:
    """Counts the statements and transactions an engine sends while ``active``."""

    def __init__(self) -> None:
        self.statements = 0
        self.begins = 0
        self.active = False
        self.last: list[str] = []

    def attach(self, sync_engine: Any) -> None:
        """Listen on a synchronous engine's cursor and begin events."""

        @event.listens_for(sync_engine, "before_cursor_execute")
        def _statement(
            _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, many: bool
        ) -> None:
            if self.active:
                self.statements += 1
                self.last.append(("many: " if many else "") + " ".join(statement.split())[:110])

        @event.listens_for(sync_engine, "begin")
        def _begin(*_args: Any) -> None:
            if self.active:
                self.begins += 1
                self.last.append("BEGIN")


async def _setup(client: httpx.AsyncClient, state: AppState) -> dict[str, str]:
    async with state.sessionmaker() as session:
        admin = await accounts_service.register(
            session,
            state.hasher,
            email=f"admin-{uuid.uuid4().hex[:8]}@example.com",
            password=PASSWORD,
            role=UserRole.ADMIN,
        )
        await session.commit()
    admin_headers = {"Authorization": f"Bearer {state.tokens.issue(admin)}"}
    for k in range(11):
        response = await client.post(
            "/agents",
            headers=admin_headers,
            json={
                "name": f"bench-{k}-{uuid.uuid4().hex[:6]}",
                "kind": "replay",
                "base_price_sat": 1_000 + 100 * k,
                "replay": {"dataset": "routerbench", "model": "gpt-3.5-turbo-1106"},
            },
        )
        response.raise_for_status()
    email = f"buyer-{uuid.uuid4().hex[:8]}@example.com"
    buyer = await client.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "role": "buyer"}
    )
    buyer.raise_for_status()
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    login.raise_for_status()
    (
        await client.post(
            f"/admin/users/{buyer.json()['id']}/credit",
            headers=admin_headers,
            json={"amount_sat": 10**12},
        )
    ).raise_for_status()
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _summary(name: str, times_ms: list[float], counter: StatementCounter, n: int) -> str:
    times_ms.sort()
    p50 = statistics.median(times_ms)
    p99 = times_ms[min(len(times_ms) - 1, int(0.99 * len(times_ms)))]
    return (
        f"{name:<22} {n / (sum(times_ms) / 1000):8.0f}/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
        f"  {counter.statements / n:5.1f} statements  {counter.begins / n:4.1f} transactions"
    )


@asynccontextmanager
async def bench_app(
    database_url: str,
) -> AsyncIterator[tuple[AppState, httpx.AsyncClient, StatementCounter]]:
    """Run the app in this process on ``database_url`` (no background work, Argon2 at its
    minimum cost); yield its state, an httpx client on it based at ``/api/v2`` and a statement
    counter on its engine."""
    with tempfile.TemporaryDirectory() as var:
        settings = Settings(
            var_dir=Path(var),
            database_url=database_url,
            jwt_secret="bench-secret-" + "x" * 32,
            auto_migrate=False,
            embedded_runners=0,
            embedded_trainer=False,
            embedded_sweeper=False,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            state: AppState = app.state.dukenet
            state.hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))
            counter = StatementCounter()
            counter.attach(state.engine.sync_engine)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench/api/v2"
            ) as client:
                yield state, client, counter


def print_lines(
    database_url: str | None, measure: Callable[[str], Coroutine[Any, Any, list[str]]]
) -> None:
    """Run ``measure`` on ``database_url`` (None: a fresh migrated SQLite file) and print the
    lines it returns."""
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url
        if url is None:
            url = f"sqlite+aiosqlite:///{tmp}/bench.db"
            upgrade(url)
        for line in asyncio.run(measure(url)):
            print(line)


async def measure(database_url: str, requests: int, *, trace: bool = False) -> list[str]:
    """Time ``requests`` submissions and as many detail reads; return printable lines."""
    async with bench_app(database_url) as (state, client, counter):
        buyer = await _setup(client, state)
        lines = []
        first = await client.post(
            "/tasks", headers=buyer, json={"description": "warm up", "complexity": 3}
        )
        first.raise_for_status()
        for name in ("POST /tasks", "GET /tasks/{id}"):
            counter.statements = counter.begins = 0
            times: list[float] = []
            for i in range(requests):
                body = {"description": f"Add two numbers, variant {i}.", "complexity": 3}
                counter.active = True
                counter.last = []
                started = time.perf_counter()
                if name == "POST /tasks":
                    response = await client.post("/tasks", headers=buyer, json=body)
                else:
                    response = await client.get(f"/tasks/{first.json()['id']}", headers=buyer)
                times.append((time.perf_counter() - started) * 1000)
                counter.active = False
                response.raise_for_status()
            lines.append(_summary(name, times, counter, requests))
            if trace:
                lines.extend(f"    {sql}" for sql in counter.last)
        return lines


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument(
        "--trace", action="store_true", help="print the statements of the last request of each"
    )
    args = parser.parse_args()
    print_lines(args.database_url, lambda url: measure(url, args.requests, trace=args.trace))


if __name__ == "__main__":
    main()
