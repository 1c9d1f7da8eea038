"""What ``GET /agents/{id}/series`` costs, in process, as an agent's record grows.

Usage: ``python benchmarks/agent_series.py [--database-url URL] [--outcomes 1000,20000]
[--calls 10]``

Runs the app in this process on an httpx ASGI transport (as ``request_cost.py``), submits one
task through the API, then clones its row into as many finished tasks of that task's agent as
each ``--outcomes`` level asks, with outcomes spread evenly over the last 366 days (random
quality, a third of them failures; PostgreSQL's statistics refreshed after each load). At each
level it times ``--calls`` reads as an admin of each window the web page offers and of the
longest ones (hour/31 days: 744 buckets; day/366 days: 366; week/364 days: 52). Prints ms
p50/p99 and statements per call. The default database is a fresh SQLite file; a PostgreSQL URL
must be migrated and is used as given (rows are added, nothing is dropped). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

os.environ.setdefault("OMP_NUM_THREADS", "1")

from request_cost import _setup, _summary, bench_app, print_lines
from sqlalchemy import insert, select, text

from dukenet.accounts.models import UserRole
from dukenet.accounts.repository import list_users
from dukenet.kit.state import AppState
from dukenet.learning.models import Outcome
from dukenet.tasks.models import Task

WINDOWS = (("hour", 2), ("day", 30), ("week", 364), ("hour", 31), ("day", 366))


async def _grow(state: AppState, template_id: uuid.UUID, count: int, rng: random.Random) -> None:
    """Add ``count`` finished copies of the template task, each with an outcome of its agent,
    spread evenly over the last 366 days."""
    now = datetime.now(UTC)
    async with state.sessionmaker() as session:
        row = dict(
            (await session.execute(select(Task.__table__).where(Task.id == template_id)))
            .mappings()
            .one()
        )
        tasks, outcomes = [], []
        for k in range(count):
            at = now - timedelta(seconds=366 * 86_400 * (k + 0.5) / count)
            task_id = uuid.uuid4()
            tasks.append({**row, "id": task_id, "idempotency_key": None, "created_at": at})
            quality = rng.random()
            outcomes.append(
                {
                    "id": uuid.uuid4(),
                    "task_id": task_id,
                    "agent_id": row["agent_id"],
                    "description": row["description"],
                    "complexity": row["complexity"],
                    "success": quality >= 1 / 3,
                    "quality": quality,
                    "price_sat": row["price_sat"],
                    "propensity": 1.0,
                    "routing": {},
                    "label_source": "agent",
                    "created_at": at,
                }
            )
        for start in range(0, count, 2_000):
            await session.execute(insert(Task), tasks[start : start + 2_000])
            await session.execute(insert(Outcome), outcomes[start : start + 2_000])
        await session.commit()
        if session.get_bind().dialect.name == "postgresql":  # as autovacuum would after a load
            await session.execute(text("ANALYZE task, outcome"))
            await session.commit()


async def measure(database_url: str, levels: list[int], calls: int) -> list[str]:
    """Grow one agent's record to each level and time the series reads; return lines."""
    async with bench_app(database_url) as (state, client, counter):
        rng = random.Random(12)
        buyer = await _setup(client, state)
        body = {"description": "Sum two numbers.", "complexity": 3}
        created = await client.post("/tasks", headers=buyer, json=body)
        created.raise_for_status()
        task = created.json()
        async with state.sessionmaker() as session:
            admins, _ = await list_users(
                session, role=UserRole.ADMIN, is_active=True, limit=1, offset=0
            )
        admin = {"Authorization": f"Bearer {state.tokens.issue(admins[0])}"}
        path = f"/agents/{task['agent_id']}/series"
        lines, grown = [], 0
        for level in levels:
            await _grow(state, uuid.UUID(task["id"]), level - grown, rng)
            grown = level
            for bucket, days in WINDOWS:
                counter.statements = counter.begins = 0
                times = []
                for _ in range(calls):
                    counter.active = True
                    started = time.perf_counter()
                    response = await client.get(
                        path, headers=admin, params={"bucket": bucket, "days": days}
                    )
                    times.append((time.perf_counter() - started) * 1000)
                    counter.active = False
                    response.raise_for_status()
                name = f"{level} outcomes {bucket}/{days}d"
                lines.append(_summary(name, times, counter, calls))
        return lines


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--outcomes", default="1000,20000", help="comma-separated totals")
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    levels = sorted(int(n) for n in args.outcomes.split(","))
    print_lines(args.database_url, lambda url: measure(url, levels, args.calls))


if __name__ == "__main__":
    main()
