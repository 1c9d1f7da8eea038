"""Added latency of the ``/v1`` gateway over calling the agent directly.

Usage: ``python benchmarks/gateway.py [--calls 200] [--warmup 20] [--json PATH]``

Starts a loopback OpenAI-compatible double (``tests/llm_double.py``, answering at once) and the
embedded default server (``create_app`` with the default settings: SQLite in WAL under a
temporary ``var/``, two embedded runners, sweeper, trainer, webhooks dispatcher; only
``DUKENET_ALLOWED_AGENT_NETWORKS=127.0.0.0/8`` so the double may be an ``llm`` agent) under
uvicorn on a free port. Registers an admin, a credited buyer with a buyer API key and one
``llm`` agent on the double, then times, one call after another with the official ``openai``
client:

- ``direct``: ``chat.completions.create`` against the double itself;
- ``gateway``: the same call against ``/v1`` with ``model="duke"``: a DukeNET task created
  (routed, priced, escrowed), claimed by a runner, executed on the double, delivered, accepted
  for the buyer (the default 24 h dispute window, so acceptance is a real settlement) and
  answered.

Prints p50/p99/mean in ms for both and the added latency (gateway − direct, at p50 and p99);
asserts nothing. The issue's target is under 25 ms added at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.llm_double import LLMDouble  # noqa: E402

from dukenet.accounts import service as accounts_service  # noqa: E402
from dukenet.accounts.models import UserRole  # noqa: E402
from dukenet.config import Settings  # noqa: E402
from dukenet.db import create_engine, create_sessionmaker  # noqa: E402
from dukenet.main import create_app  # noqa: E402

PASSWORD = "benchmark password 1"
MESSAGES = [{"role": "user", "content": "Write a python function that adds two numbers."}]


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


def _time(client: openai.OpenAI, model: str, calls: int, warmup: int) -> list[float]:
    samples = []
    for i in range(warmup + calls):
        started = time.perf_counter()
        reply = client.chat.completions.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
        elapsed = (time.perf_counter() - started) * 1000
        assert reply.choices[0].message.content
        if i >= warmup:
            samples.append(elapsed)
    return samples


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as var, LLMDouble() as double:
        settings = Settings(var_dir=Path(var), allowed_agent_networks="127.0.0.0/8")
        app = create_app(settings)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        try:
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
            report: dict[str, Any] = {
                "calls": args.calls,
                "direct": _percentiles(_time(direct, "test-model", args.calls, args.warmup)),
                "gateway": _percentiles(_time(gateway, "duke", args.calls, args.warmup)),
            }
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    report["added_p50_ms"] = round(report["gateway"]["p50_ms"] - report["direct"]["p50_ms"], 2)
    report["added_p99_ms"] = round(report["gateway"]["p99_ms"] - report["direct"]["p99_ms"], 2)
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
