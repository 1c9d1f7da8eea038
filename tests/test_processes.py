"""The ``dukenet serve``/``runner`` processes as an operator starts them: what they log at
start (where they listen, what they run), ``--log-level``, the access log (off by default)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    """Return a TCP port nobody listens on now (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(database_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """Return the environment of a DukeNET process on ``database_url``: no background work
    unless ``extra`` asks for it, and none of this shell's own ``DUKENET_`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUKENET_")}
    env.update(
        {
            "DUKENET_DATABASE_URL": database_url,
            "DUKENET_VAR_DIR": str(var_dir),
            "DUKENET_JWT_SECRET": secrets.token_urlsafe(32),
            "DUKENET_EMBEDDED_RUNNERS": "0",
            "DUKENET_EMBEDDED_TRAINER": "0",
            "DUKENET_EMBEDDED_JUDGE": "0",
            "DUKENET_EMBEDDED_WEBHOOKS": "0",
            **extra,
        }
    )
    return env


@dataclass
class Process:
    """A started ``dukenet`` process, its URL (serve) and the file its output goes to."""

    popen: subprocess.Popen[bytes]
    url: str
    output: Path

    def text(self) -> str:
        """Return what it printed so far (stdout and stderr)."""
        return self.output.read_text(errors="replace")

    def stop(self) -> int:
        """Send SIGTERM and return the exit status: 0, or -SIGTERM for ``serve`` (uvicorn
        re-raises the signal once it has shut down, for the process manager to see)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=60)


@contextmanager
def dukenet(
    env: dict[str, str], *args: str, wait_for: str | None = None, timeout_s: float = 120
) -> Iterator[Process]:
    """Run ``dukenet ARGS``; wait until it answers ``wait_for`` (a path) or prints it."""
    port = free_port()
    env = {**env, "DUKENET_PORT": str(port)}
    output = Path(env["DUKENET_VAR_DIR"]).parent / f"out-{secrets.token_hex(4)}.log"
    with output.open("wb") as sink:
        popen = subprocess.Popen(
            [sys.executable, "-m", "dukenet", *args], env=env, stdout=sink, stderr=sink
        )
    process = Process(popen, f"http://127.0.0.1:{port}", output)
    try:
        deadline = time.monotonic() + timeout_s  # a loaded 2-core machine starts slowly
        while wait_for is not None:
            assert popen.poll() is None, f"dukenet {args[0]} exited:\n{process.text()}"
            if wait_for.startswith("/"):
                try:
                    if httpx.get(process.url + wait_for, timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            elif wait_for in process.text():
                break
            if time.monotonic() > deadline:
                pytest.fail(f"dukenet {args[0]} not up after {timeout_s} s:\n{process.text()}")
            time.sleep(0.1)
        yield process
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()


STOPPED = (0, -signal.SIGTERM)


def refused(env: dict[str, str], *args: str) -> str:
    """Run ``dukenet ARGS``, assert it exits 2 (a usage error) and return its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "dukenet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    return done.stderr


@pytest.fixture
def sqlite_env(tmp_path: Path, sqlite_template: Path) -> dict[str, str]:
    """The environment of a process on a migrated SQLite file of its own."""
    path = tmp_path / "dukenet.db"
    shutil.copy(sqlite_template, path)
    return process_env(f"sqlite+aiosqlite:///{path}", tmp_path / "var")


class TestServeLogs:
    def test_start_says_where_it_listens_and_the_access_log_is_opt_in(
        self, sqlite_env: dict[str, str]
    ) -> None:
        with dukenet(sqlite_env, "serve", wait_for="/health") as quiet:
            httpx.get(quiet.url + "/api/v2/agents?token=secret-in-the-query")
            assert quiet.stop() in STOPPED
        text = quiet.text()
        assert "api listening" in text and quiet.url in text
        assert "api ready" in text and "embedded_runners=0" in text
        assert "dukenet.db" in text  # where its data is
        assert "api stopping" in text
        assert "request" not in text.replace("api ready", "")  # no access log by default

        json_env = {**sqlite_env, "DUKENET_LOG_FORMAT": "json"}
        with dukenet(json_env, "serve", "--access-log", wait_for="/health") as loud:
            httpx.get(loud.url + "/api/v2/agents?token=secret-in-the-query")
            assert loud.stop() in STOPPED
        events = [json.loads(line) for line in loud.text().splitlines() if line.startswith("{")]
        requests = [e for e in events if e.get("path") == "/api/v2/agents"]
        assert len(requests) == 1, loud.text()
        assert requests[0]["method"] == "GET" and requests[0]["status"] == 401
        assert requests[0]["ms"] >= 0 and requests[0]["level"] == "info"
        assert requests[0]["route"] == "/api/v2/agents"
        assert "secret-in-the-query" not in loud.text()
        assert any(e["event"] == "api ready" for e in events)

    def test_log_level_warning_hides_the_start_lines(self, sqlite_env: dict[str, str]) -> None:
        with dukenet(sqlite_env, "serve", "--log-level", "warning", wait_for="/health") as p:
            assert p.stop() in STOPPED
        assert "api ready" not in p.text() and "api listening" not in p.text()

    def test_a_bad_log_level_is_refused_naming_the_option(self, sqlite_env: dict[str, str]) -> None:
        assert "--log-level" in refused(sqlite_env, "serve", "--log-level", "loud")


class TestRunnerLogs:
    def test_a_database_runner_says_what_it_runs_and_stops_cleanly(
        self, sqlite_env: dict[str, str]
    ) -> None:
        with dukenet(sqlite_env, "runner", "--name", "r-7", wait_for="runner started") as p:
            assert p.stop() == 0
        text = p.text()
        assert "name=r-7" in text and "over=database" in text and "dukenet.db" in text
        assert "replay" in text  # the kinds of agents it executes
        assert "runner stopped" in text


async def _admin_headers(client: httpx.AsyncClient, env: dict[str, str]) -> dict[str, str]:
    """Create a funded admin with ``dukenet users create-admin`` and log in; return headers."""
    email, password = f"admin-{secrets.token_hex(4)}@example.com", "admin-password-1"
    created = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "dukenet", "users", "create-admin", "--email", email],
        env={**env, "DUKENET_ADMIN_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert created.returncode == 0, created.stderr
    user_id = created.stdout.strip().splitlines()[-1]
    login = await client.post("/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    funded = await client.post(
        f"/admin/users/{user_id}/credit", headers=headers, json={"amount_sat": 10**8}
    )
    assert funded.status_code == 200, funded.text
    return headers


def _children(pid: int) -> set[int]:
    """Return the ids of the processes whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


class TestWorkers:
    def test_sqlite_refuses_workers_naming_the_option(self, sqlite_env: dict[str, str]) -> None:
        error = refused(sqlite_env, "serve", "--workers", "2")
        assert "--workers" in error and "PostgreSQL" in error

    @pytest.mark.slow
    @pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
    async def test_workers_serve_and_the_runners_run_once(
        self, database_url: str, tmp_path: Path
    ) -> None:
        env = process_env(
            database_url,
            tmp_path / "var",
            DUKENET_EMBEDDED_RUNNERS="2",
            DUKENET_RUNNER_POLL_S="0.05",
            DUKENET_DISPUTE_WINDOW_S="0",
        )
        # each worker imports the whole app (ML stack included): minutes on a loaded machine
        with dukenet(env, "serve", "--workers", "2", wait_for="/health", timeout_s=400) as p:
            workers = _children(p.popen.pid)
            async with httpx.AsyncClient(base_url=p.url + "/api/v2", timeout=30) as client:
                admin = await _admin_headers(client, env)
                agent = await client.post(
                    "/agents",
                    headers=admin,
                    json={
                        "name": "gpt-replay",
                        "kind": "replay",
                        "base_price_sat": 100,
                        "replay": {"dataset": "routerbench", "model": "gpt-3.5-turbo-1106"},
                    },
                )
                assert agent.status_code == 201, agent.text
                ids = []
                for _ in range(4):
                    # the request goes to either worker
                    created = await client.post(
                        "/tasks",
                        headers=admin,
                        json={"description": "Add two numbers in Python.", "complexity": 2},
                    )
                    assert created.status_code == 201, created.text
                    ids.append(created.json()["id"])
                deadline = time.monotonic() + 120
                pending = set(ids)
                while pending and time.monotonic() < deadline:
                    for task_id in list(pending):
                        got = (await client.get(f"/tasks/{task_id}", headers=admin)).json()
                        if got["status"] in ("delivered", "completed", "failed"):
                            pending.discard(task_id)
                    await asyncio.sleep(0.2)
            code = p.stop()
        assert not pending, p.text()
        assert code in STOPPED, p.text()
        text = p.text()
        assert "workers=2" in text
        # the background work started once (in the parent), the two workers serve HTTP only
        assert text.count("embedded_runners=2") == 1, text
        assert text.count("embedded_runners=0") == 2, text
        assert len(workers) >= 2  # uvicorn's worker processes (and its own helpers)
