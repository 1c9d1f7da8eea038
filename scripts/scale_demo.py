"""``make scale-demo``: start on one machine what would run on many, drive it, print figures.

Usage::

    python scripts/scale_demo.py [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]
        [--concurrency 8,32] [--seconds 10] [--keep-database]

It starts, each as its own process with its own ``var_dir`` (as separate machines would have):

* a fresh PostgreSQL database on ``--postgres`` (migrated here, dropped at the end);
* Redis (``redis-server`` on a free loopback port, nothing saved) for rate limits and the
  live-event fan-out;
* 2 API processes (``dukenet serve``, no embedded runners or trainer), the load spread over
  them round robin as a load balancer would;
* 2 runner processes (``dukenet runner``) and 1 trainer (``dukenet trainer``);
* object storage: a ``file://`` directory shared by every process, standing in for a bucket.

Then it replays RouterBench prompts through the market (buyers submit to replay agents at each
``--concurrency``; the runner processes execute them with the recorded answers) and prints
submissions/s, completed tasks/s and the submission's p50/p95/p99 latency per level, as
``benchmarks/load.py``'s ``e2e`` phase does; and whether the trainer's champion is served by
both API processes (they load its artifact from the database: the trainer's disk is its own).
Everything is stopped at the end, on error too. Asserts nothing; figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.load import (  # the repository root, put on the path above
    Servers,
    _create_admin,
    _free_port,
    _ok,
    _setup,
    e2e_phase,
)

from dukenet.db import create_engine
from dukenet.kit.secrets import generate_key
from dukenet.learning.routerbench import load_routerbench
from dukenet.migrate import upgrade

REDIS_OPTS = ("--save", "", "--appendonly", "no")  # nothing written to disk
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


async def _admin_sql(server_url: str, sql: str) -> None:
    engine = create_engine(server_url)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(sql))
    await engine.dispose()


@contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Collect started processes; terminate (then kill) them all on leaving."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _start(
    started: list[subprocess.Popen[bytes]], args: list[str], env: dict[str, str], log: Path
) -> None:
    with log.open("wb") as sink:
        started.append(subprocess.Popen(args, env=env, stdout=sink, stderr=subprocess.STDOUT))


async def _wait_for_redis(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"PING\r\n")
            await writer.drain()
            answer = await reader.readline()
            writer.close()
            if answer.startswith(b"+PONG"):
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"redis-server did not answer on port {port}")


async def run(args: argparse.Namespace) -> None:
    """Start everything, drive it, print the figures, stop everything."""
    levels = [int(c) for c in args.concurrency.split(",")]
    if shutil.which("redis-server") is None:
        raise SystemExit("error: redis-server is not installed (apt-get install redis-server)")
    name = f"dukenet_scale_{secrets.token_hex(4)}"
    url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    await _admin_sql(args.postgres, f'CREATE DATABASE "{name}"')
    tmp = Path(tempfile.mkdtemp(prefix="dukenet-scale-"))
    try:
        await asyncio.to_thread(upgrade, url)
        await _create_admin(url)
        redis_port = _free_port()
        common = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "DUKENET_DATABASE_URL": url,
            "DUKENET_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "DUKENET_STORAGE_URL": f"file://{tmp / 'bucket'}",
            "DUKENET_JWT_SECRET": secrets.token_urlsafe(32),
            "DUKENET_SECRET_KEY": generate_key(),
            "DUKENET_AUTO_MIGRATE": "false",
            "DUKENET_EMBEDDED_RUNNERS": "0",
            "DUKENET_EMBEDDED_TRAINER": "false",
            "DUKENET_DISPUTE_WINDOW_S": "0",
            "DUKENET_RETRY_BACKOFF_S": "0",
            "DUKENET_RUNNER_POLL_S": "0.05",
            "DUKENET_LOGIN_RATE_LIMIT_PER_IP": "1000/minute",
            "DUKENET_REGISTER_RATE_LIMIT_PER_IP": "1000/minute",
        }
        (tmp / "bucket").mkdir()

        def env(role: str) -> dict[str, str]:
            return {**common, "DUKENET_VAR_DIR": str(tmp / role)}

        python = [sys.executable, "-m", "dukenet"]
        with _processes() as started:
            _start(
                started,
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", *REDIS_OPTS],
                common,
                tmp / "redis.log",
            )
            await _wait_for_redis(redis_port)
            for i in range(2):
                _start(
                    started,
                    [*python, "runner", "--name", f"runner-{i}"],
                    env(f"runner-{i}"),
                    tmp / f"runner-{i}.log",
                )
            _start(started, [*python, "trainer"], env("trainer"), tmp / "trainer.log")
            servers = Servers(env("api"), 2)
            print(
                f"started: PostgreSQL database {name}, Redis :{redis_port}, 2 API processes "
                f"({', '.join(u.removesuffix('/api/v2') for u in servers.urls)}), 2 runners, "
                f"1 trainer; logs in {tmp}",
                flush=True,
            )
            try:
                await servers.wait()
                limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
                async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                    await _drive(client, servers, levels, args.seconds)
            finally:
                servers.stop()
    finally:
        if not args.keep_database:
            await _admin_sql(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"stopped everything; database {name} {'kept' if args.keep_database else 'dropped'}")


async def _drive(
    client: httpx.AsyncClient, servers: Servers, levels: list[int], seconds: float
) -> None:
    admin, buyers = await _setup(client, servers, max(levels))
    prompts = itertools.cycle(load_routerbench("train").prompts)
    # Warm-up: each runner loads RouterBench before its first task (seconds on a loaded box).
    started = time.perf_counter()
    print(await e2e_phase(client, servers, admin, buyers, prompts, 2, 5.0), "(warm-up)")
    print(f"warm-up took {time.perf_counter() - started:.0f} s", flush=True)
    for c in levels:
        print(await e2e_phase(client, servers, admin, buyers, prompts, c, seconds), flush=True)
    # The trainer trains every 100 outcomes on its own disk; both API processes must serve it.
    deadline = time.monotonic() + 300
    champions: list[int | None] = []
    while time.monotonic() < deadline:
        champions = [
            _ok(await client.get(f"{url}/model/status", headers=admin)).get("champion_version")
            for url in servers.urls
        ]
        if all(v is not None for v in champions):
            break
        await asyncio.sleep(1)
    routed = []
    for url in servers.urls:
        task = _ok(
            await client.post(
                f"{url}/tasks",
                headers=buyers[0],
                json={"description": "Add two numbers in Python.", "complexity": 2},
            )
        )
        routed.append(task.get("model_version"))
    print(f"champion per API process: {champions}; a new task on each routed by: {routed}")


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL server URL")
    parser.add_argument("--concurrency", default="8,32")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep-database", action="store_true")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
