"""``dukenet --help`` stays fast: the CLI's import and its help pages load no heavy module (the
ORM, the ML stack, the web app). Asserted on the set of imported modules, not on a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "sklearn",
    "scipy",
    "numpy",
    "pandas",
    "pyarrow",
    "torch",
    "transformers",
    "skops",
    "optuna",
    "sqlalchemy",
    "alembic",
    "fastapi",
    "uvicorn",
    "httpx",
    "dukenet.main",
)

PROBE = """
import json, sys
from dukenet.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _loaded_after(*argv: str) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


class TestHelpImportsNothingHeavy:
    @pytest.mark.parametrize(
        "argv",
        [
            ("--help",),
            ("serve", "--help"),
            ("runner", "--help"),
            ("replay", "--help"),
            ("models", "--help"),
            ("datasets", "export", "--help"),
        ],
    )
    def test_help_pages(self, argv: tuple[str, ...]) -> None:
        code, modules = _loaded_after(*argv)
        assert code == 0
        assert "dukenet.cli" in modules  # the probe did import the CLI
        assert _heavy(modules) == []

    def test_the_probe_sees_a_command_import_the_orm(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # the control: a command that runs (not its help) loads the ORM where it needs it
        monkeypatch.setenv("DUKENET_VAR_DIR", str(tmp_path / "var"))
        monkeypatch.delenv("DUKENET_DATABASE_URL", raising=False)
        code, modules = _loaded_after("db", "upgrade")
        assert code in (0, None)
        assert {"sqlalchemy", "alembic"} <= modules
        assert "sklearn" not in modules  # migrating needs no ML stack either
