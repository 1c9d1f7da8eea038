"""Added latency of the ``/v1`` gateway over calling the agent directly and over the task API,
and the first chunk's latency of a streaming call.

Usage: ``python benchmarks/gateway.py [--calls 200] [--warmup 20] [--poll-ms 5] [--json PATH]
[--env DUKENET_X=VALUE ...]``

Starts a loopback OpenAI-compatible double (``tests/llm_double.py``, answering at once) here and
the embedded default server in a process of its own (``dukenet serve`` with the default
settings: SQLite in WAL under a temporary ``var/``, two embedded runners, sweeper, trainer,
webhooks dispatcher; only ``DUKENET_ALLOWED_AGENT_NETWORKS=127.0.0.0/8`` so the double may be an
``llm`` agent, and ``--env`` settings) on a free port. Registers an admin, a credited buyer with
a buyer API key and one ``llm`` agent on the double, then times rounds of one call of each kind
(interleaved, so the server's background work weighs on each kind alike), one call after
another with the official ``openai`` client:

- ``direct``: ``chat.completions.create`` against the double itself;
- ``gateway``: the same call against ``/v1`` with ``model="duke"``: a DukeNET task created
  (routed, priced, escrowed), claimed by a runner, executed on the double, delivered, accepted
  for the buyer (the default 24 h dispute window, so acceptance is a real settlement) and
  answered;
- ``task_api``: the same work through the plain task API with the same key: ``POST /tasks``,
  ``GET /tasks/{id}`` every ``--poll-ms`` until delivered, ``POST /tasks/{id}/accept``;
- ``direct_stream`` and ``gateway_stream``: ``stream=True`` against the double (streaming its
  answer word by word, no delay) and against ``/v1`` (the runner asks the agent to stream and
  relays each piece): ``first_chunk`` is the time to the first chunk with content, ``total`` to
  the end of the stream.

Prints p50/p99/mean in ms for each and the added latency (gateway − direct, gateway − task API,
at p50 and p99); asserts nothing. The issue's target is under 25 ms added at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.llm_double import LLMDouble  # noqa: E402

from dukenet.accounts import service as accounts_service  # noqa: E402
from dukenet.accounts.models import UserRole  # noqa: E402
from dukenet.config import Settings  # noqa: E402
from dukenet.db import create_engine, create_sessionmaker  # noqa: E402

PASSWORD = "benchmark password 1"
PROMPT = "Write a python function that adds two numbers."
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]


async def _admin(settings: Settings) -> str:
    engine = create_engine(settings.resolved_database_url)
    async with create_sessionmaker(engine)() as session:
        email = f"admin-{uuid.uuid4().hex[:6]}@example.com"
        await accounts_service.register(
            session,
            accounts_service.password_hasher(),
            email=email,
            password=PASSWORD,
            role=UserRole.ADMIN,
        )
        await session.commit()
    await engine.dispose()
    return email


def _login(api: httpx.Client, email: str) -> dict[str, str]:
    token = api.post("/auth/login", json={"email": email, "password": PASSWORD})
    token.raise_for_status()
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def _task_api_call(api: httpx.Client, key: str, poll_s: float) -> float:
    """One task through the task API: ``POST /tasks``, ``GET /tasks/{id}`` every ``poll_s``
    until delivered, ``POST /tasks/{id}/accept``; return its ms."""
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    created = api.post("/tasks", headers=headers, json={"description": PROMPT, "complexity": 3})
    created.raise_for_status()
    task_id = created.json()["id"]
    while (status := api.get(f"/tasks/{task_id}", headers=headers).json()["status"]) not in (
        "delivered",
        "completed",
        "failed",
    ):
        time.sleep(poll_s)
    assert status == "delivered", status
    api.post(f"/tasks/{task_id}/accept", headers=headers).raise_for_status()
    return (time.perf_counter() - started) * 1000


def _stream_call(client: openai.OpenAI, model: str) -> tuple[float, float, int]:
    """One streaming call: (ms to the first chunk with content, ms to the end, content
    chunks)."""
    started = time.perf_counter()
    first_at = None
    pieces = 0
    for chunk in client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces += 1
            if first_at is None:
                first_at = time.perf_counter()
    ended = time.perf_counter()
    assert first_at is not None
    return (first_at - started) * 1000, (ended - started) * 1000, pieces


def _call(client: openai.OpenAI, model: str) -> float:
    """One call that does not stream; return its ms."""
    started = time.perf_counter()
    reply = client.chat.completions.create(model=model, messages=MESSAGES)
    elapsed = (time.perf_counter() - started) * 1000
    assert reply.choices[0].message.content
    return elapsed


def _rounds(
    direct: openai.OpenAI, gateway: openai.OpenAI, api: httpx.Client, key: str, args: Any
) -> dict[str, Any]:
    """Time ``warmup + calls`` rounds, each one call of every kind (interleaved, so that the
    server's background work weighs on every kind alike); keep the last ``calls``."""
    samples: dict[str, list[float]] = {}
    chunks: dict[str, int] = {"direct_stream": 0, "gateway_stream": 0}
    for i in range(args.warmup + args.calls):
        round_ = {
            "direct": _call(direct, "test-model"),
            "gateway": _call(gateway, "duke"),
            "task_api": _task_api_call(api, key, args.poll_ms / 1000),
        }
        for name, client, model in (
            ("direct_stream", direct, "test-model"),
            ("gateway_stream", gateway, "duke"),
        ):
            first, total, pieces = _stream_call(client, model)
            round_[f"{name}_first_chunk"], round_[f"{name}_total"] = first, total
            if i >= args.warmup:
                chunks[name] += pieces
        if i >= args.warmup:
            for name, ms in round_.items():
                samples.setdefault(name, []).append(ms)
    report: dict[str, Any] = {name: _percentiles(ms) for name, ms in samples.items()}
    for name, count in chunks.items():
        report[f"{name}_content_chunks_per_call"] = round(count / max(args.calls, 1), 2)
    return report


@contextlib.contextmanager
def _serve(var: Path, extra_env: dict[str, str]) -> Iterator[str]:
    """Run ``dukenet serve`` (the embedded default, plus ``extra_env``) in its own process;
    yield its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUKENET_")}
    env.update(
        {
            "DUKENET_VAR_DIR": str(var),
            "DUKENET_PORT": str(port),
            "DUKENET_ALLOWED_AGENT_NETWORKS": "127.0.0.0/8",
            "DUKENET_WEB_UI": "0",
            **extra_env,
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "dukenet", "serve"], env=env, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit("dukenet serve exited")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("dukenet serve did not start within 120 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="DUKENET_X=VALUE",
        help="a setting for the server (repeatable), e.g. DUKENET_EMBEDDED_RUNNERS_THREAD=0",
    )
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    with (
        tempfile.TemporaryDirectory() as var,
        LLMDouble(streaming=True) as double,
        _serve(Path(var), extra_env) as url,
    ):
        settings = Settings(var_dir=Path(var))
        with httpx.Client(base_url=url + "/api/v2", timeout=60) as api:
            admin = _login(api, asyncio.run(_admin(settings)))
            email = f"buyer-{uuid.uuid4().hex[:6]}@example.com"
            buyer_id = api.post(
                "/auth/register", json={"email": email, "password": PASSWORD, "role": "buyer"}
            ).json()["id"]
            buyer = _login(api, email)
            api.post(
                f"/admin/users/{buyer_id}/credit", headers=admin, json={"amount_sat": 10**12}
            ).raise_for_status()
            api.post(
                "/agents",
                headers=admin,
                json={
                    "name": "double",
                    "kind": "llm",
                    "base_price_sat": 1_000,
                    "llm": {"base_url": double.base_url, "model": "test-model"},
                },
            ).raise_for_status()
            key = api.post("/buyer-keys", headers=buyer, json={"name": "bench"})
            key.raise_for_status()
        direct = openai.OpenAI(base_url=double.base_url, api_key="unused", max_retries=0)
        gateway = openai.OpenAI(base_url=url + "/v1", api_key=key.json()["key"], max_retries=0)
        with httpx.Client(base_url=url + "/api/v2", timeout=60) as api:
            report = {"calls": args.calls, **_rounds(direct, gateway, api, key.json()["key"], args)}
    report["added_p50_ms"] = round(report["gateway"]["p50_ms"] - report["direct"]["p50_ms"], 2)
    report["added_p99_ms"] = round(report["gateway"]["p99_ms"] - report["direct"]["p99_ms"], 2)
    for q in ("p50_ms", "p99_ms"):
        report[f"gateway_minus_task_api_{q}"] = round(
            report["gateway"][q] - report["task_api"][q], 2
        )
        report[f"stream_first_chunk_added_{q}"] = round(
            report["gateway_stream_first_chunk"][q] - report["direct_stream_first_chunk"][q], 2
        )
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
