"""The ``dukenet`` command line against a real SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dukenet.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLI at an empty embedded setup under ``tmp_path``."""
    monkeypatch.setenv("DUKENET_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("DUKENET_DATABASE_URL", raising=False)
    return tmp_path


def test_create_admin_credit_and_ledger_check(env: Path) -> None:
    created = runner.invoke(
        app, ["users", "create-admin", "--email", "root@example.com", "--password", "s3cret-pass"]
    )
    assert created.exit_code == 0, created.output
    credited = runner.invoke(
        app, ["users", "credit", "--email", "root@example.com", "--amount-sat", "5000"]
    )
    assert credited.exit_code == 0, credited.output
    assert "balance: 5000 sat" in credited.output
    check = runner.invoke(app, ["ledger", "check"])
    assert check.exit_code == 0, check.output
    report = json.loads(check.output)
    assert report["ok"] is True and report["total_sat"] == 0 and report["transactions"] == 1


def test_errors_name_the_field(env: Path) -> None:
    short = runner.invoke(
        app, ["users", "create-admin", "--email", "a@example.com", "--password", "short"]
    )
    assert short.exit_code != 0 and "--password" in short.output
    runner.invoke(app, ["db", "upgrade"])
    unknown = runner.invoke(
        app, ["users", "credit", "--email", "nobody@example.com", "--amount-sat", "1"]
    )
    assert unknown.exit_code == 1 and "--email" in unknown.output
    negative = runner.invoke(
        app, ["users", "credit", "--email", "a@example.com", "--amount-sat", "0"]
    )
    assert negative.exit_code == 2 and "amount-sat" in negative.output
    duplicate_args = [
        "users",
        "create-admin",
        "--email",
        "b@example.com",
        "--password",
        "longenough",
    ]
    assert runner.invoke(app, duplicate_args).exit_code == 0
    again = runner.invoke(app, duplicate_args)
    assert again.exit_code == 1 and "already registered" in again.output


def test_models_commands_without_versions(env: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "version" in listed.output
    rollback = runner.invoke(app, ["models", "rollback"])
    assert rollback.exit_code == 1 and "no champion" in rollback.output
    promote = runner.invoke(app, ["models", "promote", "3"])
    assert promote.exit_code == 1 and "not found" in promote.output
