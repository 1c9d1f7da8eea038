"""The served OpenAPI document holds: schemathesis fuzzes every operation as a buyer and as an
admin against a real ``dukenet serve`` and finds no 5xx, no response outside its schema and no
status code the operation does not declare (``kit/openapi.py`` declares the error codes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from benchmarks.chaos import create_admin, served

# Small and seeded, so a run takes about a minute on 2 cores and replays identically. For a
# deeper local run raise SCHEMATHESIS_MAX_EXAMPLES and add the coverage phase (boundary values
# of every parameter, about 3 minutes more a run): SCHEMATHESIS_PHASES=coverage,fuzzing,stateful.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "3"))
PHASES = os.environ.get("SCHEMATHESIS_PHASES", "fuzzing,stateful")
SEED = 20261201
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
# /auth/logout-all: ending every session of the caller would leave the rest of the run
# unauthenticated. /events/: server-sent event streams do not end. /v1/: the OpenAI-compatible
# gateway answers errors in OpenAI's shape, not this API's.
EXCLUDED_PATHS = r"(/auth/logout-all$|/events/|^/v1/)"
ADMIN = ("admin@example.com", "admin-password-1")
BUYER = ("buyer@example.com", "buyer-password-1")


def _token(http: httpx.Client, email: str, password: str) -> str:
    response = http.post("/auth/login", json={"email": email, "password": password})
    response.raise_for_status()
    return str(response.json()["access_token"])


def _populate(base_url: str, database_url: str) -> dict[str, str]:
    """An admin, a credited buyer, a replay agent and a task; return each role's access token."""
    create_admin(database_url, *ADMIN)
    with httpx.Client(base_url=f"{base_url}/api/v2", timeout=30) as http:
        admin = {"Authorization": f"Bearer {_token(http, *ADMIN)}"}
        buyer_id = http.post(
            "/auth/register", json={"email": BUYER[0], "password": BUYER[1], "role": "buyer"}
        ).json()["id"]
        http.post(
            f"/admin/users/{buyer_id}/credit", headers=admin, json={"amount_sat": 10**9}
        ).raise_for_status()
        http.post(
            "/agents",
            headers=admin,
            json={
                "name": "replay-bot",
                "kind": "replay",
                "base_price_sat": 1_000,
                "replay": {"dataset": "routerbench", "model": "gpt-4-1106-preview"},
            },
        ).raise_for_status()
        buyer = {"Authorization": f"Bearer {_token(http, *BUYER)}"}
        http.post(
            "/tasks", headers=buyer, json={"description": "What is 2 + 2?", "complexity": 2}
        ).raise_for_status()
        return {"buyer": buyer["Authorization"], "admin": admin["Authorization"]}


def _schemathesis(base_url: str, authorization: str, report: Path) -> tuple[int, str]:
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: {authorization}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--phases",
        PHASES,
        "--seed",
        str(SEED),
        "--generation-deterministic",
        "--workers",
        "1",
        "--exclude-path-regex",
        EXCLUDED_PATHS,
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    return done.returncode, done.stdout + done.stderr


def _failures(report: Path) -> list[str]:
    """The failing operations in a JUnit report, each with its check's code and status."""
    if not report.exists():
        return []
    found = []
    for case in ET.parse(report).getroot().iter("testcase"):
        for failure in case:
            if failure.tag in ("failure", "error"):
                text = failure.text or ""
                codes = sorted(set(re.findall(r"- (ST\d+ [^\n]+)", text)))
                received = re.findall(r"Received: (\S+)", text)[:1]
                found.append(f"{case.get('name')}: {', '.join(codes)} {' '.join(received)}")
    return found


@pytest.mark.slow
def test_every_operation_keeps_its_documented_contract(database_url: str, tmp_path: Path) -> None:
    with served(database_url, tmp_path / "var") as (base_url, _server):
        tokens = _populate(base_url, database_url)
        for role, authorization in tokens.items():
            code, output = _schemathesis(base_url, authorization, tmp_path / f"{role}.xml")
            summary = re.search(r"Test cases:\s*\n\s*(.+)", output)
            print(f"schemathesis as {role}: {summary.group(1) if summary else '?'}")
            failures = "\n".join(_failures(tmp_path / f"{role}.xml"))
            assert code == 0, f"schemathesis as {role}:\n{failures}\n\n{output[-8000:]}"
