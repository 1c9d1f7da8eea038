"""``dukenet replay FILE``: end to end against a real ``dukenet serve`` on each backend, and its
errors on a bad file."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import UserRole
from dukenet.cli import app
from dukenet.db import create_engine, create_sessionmaker

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_qa.csv"
ADMIN_EMAIL = "replay-admin@example.com"
ADMIN_PASSWORD = "replay-admin-password"


@dataclass(frozen=True)
class Server:
    """A running ``dukenet serve`` and the environment to talk to it."""

    url: str
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _create_admin(database_url: str) -> None:
    engine = create_engine(database_url)
    async with create_sessionmaker(engine)() as session:
        await accounts_service.register(
            session,
            accounts_service.password_hasher(),
            email=ADMIN_EMAIL,
            password=ADMIN_PASSWORD,
            role=UserRole.ADMIN,
        )
        await session.commit()
    await engine.dispose()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """``dukenet serve`` on the test database with one runner of its own (which must leave the
    replay's agents alone: it does not hold the file) and no dispute window."""
    import asyncio

    asyncio.run(_create_admin(database_url))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUKENET_")}
    env.update(
        {
            "DUKENET_DATABASE_URL": database_url,
            "DUKENET_VAR_DIR": str(tmp_path / "var"),
            "DUKENET_PORT": str(port),
            "DUKENET_JWT_SECRET": secrets.token_urlsafe(32),
            # The server's own runners hold only RouterBench, so they leave the replay to it.
            "DUKENET_EMBEDDED_RUNNERS": "1",
            "DUKENET_EMBEDDED_TRAINER": "0",
            "DUKENET_DISPUTE_WINDOW_S": "0",
            "DUKENET_ROUTING_SEED": "0",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "dukenet", "serve"], env=env, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):  # a loaded 2-core machine can take a minute to start it
            assert process.poll() is None, "dukenet serve exited"
            try:
                if httpx.get(f"{url}/openapi.json").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("dukenet serve did not start within 120 s")
        yield Server(url, env)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _replay(server: Server, tmp_path: Path, *args: str) -> tuple[dict[str, object], str]:
    out = tmp_path / f"summary-{secrets.token_hex(3)}.json"
    command = [sys.executable, "-m", "dukenet", "replay", str(TINY), "--server", server.url]
    done = subprocess.run(
        [*command, "--json", str(out), *args],
        env={
            **server.env,
            "DUKENET_ADMIN_EMAIL": ADMIN_EMAIL,
            "DUKENET_ADMIN_PASSWORD": ADMIN_PASSWORD,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, object] = json.loads(out.read_text())
    return summary, done.stdout


@pytest.mark.slow
class TestReplayCommand:
    def test_replays_a_tiny_dataset_through_the_market(
        self, server: Server, tmp_path: Path
    ) -> None:
        summary, printed = _replay(server, tmp_path, "--buyers", "2", "--batch", "3")
        market = summary["market"]
        assert isinstance(market, dict)
        assert market["tasks"] == 4
        statuses = market["statuses"]
        assert isinstance(statuses, dict)
        assert set(statuses) <= {"completed", "failed"}
        assert sum(statuses.values()) == 4
        choices = summary["choices"]
        assert isinstance(choices, dict) and sum(choices.values()) == 4
        assert set(choices) <= {"cheap-bot", "smart-bot"}
        references = summary["references"]
        assert isinstance(references, dict)
        assert references["cheap-bot"] == {"success_rate": 0.5, "cost_per_1k_usd": 0.125}
        assert references["smart-bot"] == {"success_rate": 1.0, "cost_per_1k_usd": 2.5}
        assert references["oracle"] == {"success_rate": 1.0, "cost_per_1k_usd": 1.8}
        # The market's figures are the recorded outcomes of the agents it chose, and the tasks'
        # final states agree with those recorded verdicts.
        assert statuses.get("completed", 0) == round(4 * market["success_rate"])
        assert 0.125 <= market["cost_per_1k_usd"] <= 2.5
        assert market["unrecorded"] == 0
        assert "market (Duke)" in printed and "smart-bot" in printed

        with httpx.Client(base_url=f"{server.url}/api/v2") as http:
            token = http.post(
                "/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            ).json()["access_token"]
            admin = {"Authorization": f"Bearer {token}"}
            agents = {a["name"]: a for a in http.get("/agents", headers=admin).json()}
            # base price = mean recorded cost (USD) x 10^7 sat/USD
            assert agents["cheap-bot"]["base_price_sat"] == 1_250
            assert agents["smart-bot"]["base_price_sat"] == 25_000
            assert sum(a["finished_tasks"] for a in agents.values()) == 4
            assert http.get("/admin/ledger/check", headers=admin).json()["ok"] is True
            keys = http.get("/api-keys", headers=admin).json()
            assert keys and all(k["revoked_at"] for k in keys)  # its runner key is revoked

        # A second replay reuses the agents it registered and runs four more tasks.
        again, _ = _replay(server, tmp_path, "--limit", "2", "--no-shuffle")
        market = again["market"]
        assert isinstance(market, dict) and market["tasks"] == 2
        with httpx.Client(base_url=f"{server.url}/api/v2") as http:
            listed = http.get("/agents", headers=admin).json()
            assert sorted(a["name"] for a in listed) == ["cheap-bot", "smart-bot"]


class TestReplayCommandErrors:
    def test_a_bad_file_is_reported_with_file_line_and_column(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.csv"
        bad.write_text("task_id,prompt,agent,quality,cost_usd\nt,p,a,1,free\n")
        result = CliRunner().invoke(
            app,
            ["replay", str(bad), "--admin-email", "a@example.com", "--admin-password", "x" * 12],
        )
        assert result.exit_code == 2
        assert f"{bad}: line 2: column 'cost_usd': 'free' is not a number" in result.output

    def test_recorded_cost_pricing_cannot_take_another_complexity(self) -> None:
        credentials = ["--admin-email", "a@example.com", "--admin-password", "x" * 12]
        result = CliRunner().invoke(
            app,
            [
                "replay",
                str(TINY),
                *credentials,
                "--pricing",
                "recorded-cost",
                "--complexity",
                "text",
            ],
        )
        assert result.exit_code == 2
        assert "--pricing/--complexity" in result.output and "'text'" in result.output

    def test_admin_credentials_are_required(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("DUKENET_ADMIN_EMAIL", raising=False)
        monkeypatch.delenv("DUKENET_ADMIN_PASSWORD", raising=False)
        result = CliRunner().invoke(app, ["replay", str(TINY)])
        assert result.exit_code == 2
        assert "--admin-email and --admin-password" in result.output

    def test_an_unreachable_server(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(
            app,
            [
                "replay",
                str(TINY),
                "--server",
                f"http://127.0.0.1:{_free_port()}",
                "--admin-email",
                "a@example.com",
                "--admin-password",
                "x" * 12,
            ],
        )
        assert result.exit_code == 1
        assert "cannot reach" in result.output
