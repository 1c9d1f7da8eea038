"""What one Prometheus scrape of ``/metrics`` costs, in process, as the market grows.

Usage: ``python benchmarks/metrics_scrape.py [--database-url URL] [--tasks 1000,4000]
[--scrapes 20]``

Runs the app in this process on an httpx ASGI transport (as ``request_cost.py``), submits tasks
up to each ``--tasks`` total (each one an escrow hold: a ledger transaction of 2 entries), and
times ``--scrapes`` scrapes twice: with the ledger check (a full scan of the ledger's entries;
``/metrics`` runs it at most once a minute per process, ``LEDGER_CHECK_INTERVAL_S``) and
without it (the other scrapes of that minute). Prints ms p50/p99 and statements per scrape.
The default database is a fresh SQLite file; a PostgreSQL URL must be migrated and is used as
given (rows are added, nothing is dropped). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import httpx
from request_cost import StatementCounter, _setup, _summary, bench_app, print_lines

from dukenet.monitoring import metrics as metrics_module


async def _scrapes(
    client: httpx.AsyncClient, counter: StatementCounter, n: int, *, ledger_check: bool
) -> list[float]:
    """Scrape ``n`` times, counting statements; return each scrape's wall time in ms."""
    metrics_module.LEDGER_CHECK_INTERVAL_S = 0.0 if ledger_check else 1e9
    counter.statements = counter.begins = 0
    times = []
    for _ in range(n):
        counter.active = True
        started = time.perf_counter()
        response = await client.get("http://bench/metrics")
        times.append((time.perf_counter() - started) * 1000)
        counter.active = False
        response.raise_for_status()
    return times


async def measure(database_url: str, levels: list[int], scrapes: int) -> list[str]:
    """Grow the market to each level of tasks and time the scrapes; return printable lines."""
    async with bench_app(database_url) as (state, client, counter):
        buyer = await _setup(client, state)
        lines = []
        submitted = 0
        for level in levels:
            while submitted < level:
                body = {"description": f"Sum, variant {submitted}.", "complexity": 3}
                (await client.post("/tasks", headers=buyer, json=body)).raise_for_status()
                submitted += 1
            for check in (True, False):
                times = await _scrapes(client, counter, scrapes, ledger_check=check)
                name = f"{level} tasks, " + ("with" if check else "without") + " check"
                lines.append(_summary(name, times, counter, scrapes))
        return lines


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--tasks", default="1000,4000", help="comma-separated totals")
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args()
    levels = sorted(int(n) for n in args.tasks.split(","))
    print_lines(args.database_url, lambda url: measure(url, levels, args.scrapes))


if __name__ == "__main__":
    main()
