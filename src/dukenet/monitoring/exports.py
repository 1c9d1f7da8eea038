"""Exports of tasks, results and outcomes as CSV or JSON Lines, streamed in pages."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.learning.models import Outcome
from dukenet.tasks.models import Task, TaskResult

PAGE_ROWS = 500


class ExportKind(StrEnum):
    """What to export."""

    TASKS = "tasks"
    RESULTS = "results"
    OUTCOMES = "outcomes"


class ExportFormat(StrEnum):
    """How to write it."""

    CSV = "csv"
    JSONL = "jsonl"


_COLUMNS: dict[ExportKind, tuple[type[Any], tuple[str, ...]]] = {
    ExportKind.TASKS: (
        Task,
        (
            "id", "buyer_id", "description", "complexity", "status", "agent_id", "price_sat",
            "cost_weight", "max_price_sat", "model_version", "propensity", "attempts",
            "created_at", "finished_at",
        ),
    ),
    ExportKind.RESULTS: (
        TaskResult,
        (
            "id", "task_id", "agent_id", "attempt", "text", "success", "confidence",
            "latency_ms", "cost_usd", "created_at",
        ),
    ),
    ExportKind.OUTCOMES: (
        Outcome,
        (
            "id", "task_id", "agent_id", "description", "complexity", "success", "quality",
            "price_sat", "cost_usd", "latency_ms", "propensity", "model_version", "created_at",
        ),
    ),
}  # fmt: skip


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection)."""


def csv_safe(value: Any) -> Any:
    """Return ``value`` safe for a spreadsheet: a string starting with ``= + - @``, a tab or a
    carriage return gets a leading apostrophe (OWASP's CSV-injection advice); numbers and other
    values pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


async def export_rows(
    sessionmaker: async_sessionmaker[AsyncSession], kind: ExportKind, fmt: ExportFormat
) -> AsyncIterator[bytes]:
    """Yield the export as encoded chunks, oldest first, reading ``PAGE_ROWS`` rows per query
    (keyset pagination on ``(created_at, id)``) so memory stays bounded."""
    model, columns = _COLUMNS[kind]
    write: Callable[[dict[str, Any]], str]
    if fmt is ExportFormat.CSV:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        yield buffer.getvalue().encode()

        def write(row: dict[str, Any]) -> str:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow({k: csv_safe(v) for k, v in row.items()})
            return buffer.getvalue()
    else:

        def write(row: dict[str, Any]) -> str:
            return json.dumps(row, ensure_ascii=False) + "\n"

    after: tuple[Any, Any] | None = None
    while True:
        async with sessionmaker() as session:
            stmt = select(model).order_by(model.created_at, model.id).limit(PAGE_ROWS)
            # a private task, its result and its outcome never leave the database
            if model is Task:
                stmt = stmt.where(Task.private.is_(False))
            else:
                private = select(Task.id).where(Task.private.is_(True))
                stmt = stmt.where(model.task_id.not_in(private))
            if after is not None:
                stmt = stmt.where(
                    (model.created_at > after[0])
                    | ((model.created_at == after[0]) & (model.id > after[1]))
                )
            page = (await session.execute(stmt)).scalars().all()
        if not page:
            return
        yield "".join(write({c: _plain(getattr(r, c)) for c in columns}) for r in page).encode()
        after = (page[-1].created_at, page[-1].id)
