"""``dukenet datasets export sft|dpo|kto|router``: write a dataset and its manifest."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Annotated

import typer

from dukenet.config import Settings
from dukenet.errors import DukenetError

datasets_app = typer.Typer(help="Training datasets (TRL formats).", no_args_is_help=True)


def _fail(name: str, problem: str) -> typer.BadParameter:
    return typer.BadParameter(problem, param_hint=name)


@datasets_app.command("export")
def export(
    kind: Annotated[str, typer.Argument(help="sft, dpo, kto or router.")],
    output: Annotated[Path, typer.Option(help="Directory to write the files into.")],
    source: Annotated[
        list[str] | None,
        typer.Option(help="Only outcomes labelled by this source (repeatable)."),
    ] = None,
    min_confidence: Annotated[
        float, typer.Option(help="Only labels at least this confident (0..1).")
    ] = 0.0,
    agent_id: Annotated[str | None, typer.Option(help="Only this agent's outcomes.")] = None,
    parquet: Annotated[bool, typer.Option(help="Also write Parquet (pyarrow).")] = True,
) -> None:
    """Export a dataset of labelled outcomes as <kind>.jsonl (+ .parquet) and manifest.json;
    private and discarded tasks are never included, and an empty match writes an empty
    dataset whose manifest says so."""
    # imported here: the ORM and pyarrow stay out of ``dukenet --help``
    from dukenet.datasets import service
    from dukenet.datasets.formats import DatasetKind
    from dukenet.db import create_sessionmaker, engine_for
    from dukenet.learning.models import LabelSource

    kinds = [k.value for k in DatasetKind]
    if kind not in kinds:
        raise _fail("KIND", f"must be one of {', '.join(kinds)}")
    sources: list[LabelSource] = []
    for value in source or []:
        try:
            sources.append(LabelSource(value))
        except ValueError:
            allowed = ", ".join(s.value for s in LabelSource)
            raise _fail("--source", f"{value!r} is not one of {allowed}") from None
    if not 0.0 <= min_confidence <= 1.0:
        raise _fail("--min-confidence", "must be in [0, 1]")
    try:
        agent = uuid.UUID(agent_id) if agent_id is not None else None
    except ValueError:
        raise _fail("--agent-id", f"{agent_id!r} is not a UUID") from None
    if output.exists() and not output.is_dir():
        raise _fail("--output", f"{output} is not a directory")
    filters = service.DatasetFilters(
        sources=tuple(sources) or None, min_confidence=min_confidence, agent_id=agent
    )
    settings = Settings()

    async def run() -> dict[str, object]:
        engine = engine_for(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                dataset = await service.export(
                    session,
                    kind=DatasetKind(kind),
                    success_threshold=settings.success_threshold,
                    filters=filters,
                )
        finally:
            await engine.dispose()
        return service.write(dataset, output, parquet=parquet)

    try:
        manifest = asyncio.run(run())
    except DukenetError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    summary = {k: manifest[k] for k in ("kind", "rows", "tasks", "empty", "sha256", "files")}
    typer.echo(json.dumps(summary))
