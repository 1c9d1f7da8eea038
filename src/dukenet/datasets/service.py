"""Collect labelled examples from the database and write a dataset with its manifest.

Private tasks never leave the database, and tasks a curator discarded are left out of every
kind. ``export`` writes ``<kind>.jsonl`` (and ``<kind>.parquet`` with the ``parquet`` extra)
plus ``manifest.json``: counts, filters, source task ids, label sources and the SHA-256 of the
JSONL file's canonical bytes. An export matching nothing writes an empty dataset whose manifest
says so.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.agents.models import Agent
from dukenet.comparisons import exports as comparison_exports
from dukenet.curation.models import CurationAction, CurationDecision
from dukenet.datasets.formats import BUILDERS, DatasetKind, Example
from dukenet.errors import BadRequest
from dukenet.feedback.models import Feedback
from dukenet.kit.orm import utcnow
from dukenet.learning.models import LabelSource, Outcome
from dukenet.tasks.models import Task, TaskResult

FORMAT_NAME = "trl-conversational"


@dataclass(frozen=True)
class DatasetFilters:
    """Which outcomes an export reads: labels of these ``sources`` (None: any) with at least
    ``min_confidence``, of ``agent_id``, created in [``created_from``, ``created_to``)."""

    sources: tuple[LabelSource, ...] | None = None
    min_confidence: float = 0.0
    agent_id: uuid.UUID | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the filters as written in the manifest."""
        return {
            "sources": None if self.sources is None else [s.value for s in self.sources],
            "min_confidence": self.min_confidence,
            "agent_id": None if self.agent_id is None else str(self.agent_id),
            "created_from": None if self.created_from is None else self.created_from.isoformat(),
            "created_to": None if self.created_to is None else self.created_to.isoformat(),
        }


@dataclass(frozen=True)
class Dataset:
    """Rows of one kind, the task ids each came from, and the examples used."""

    kind: DatasetKind
    rows: list[dict[str, Any]]
    task_ids: list[uuid.UUID]
    examples: list[Example] = field(default_factory=list)
    filters: DatasetFilters = field(default_factory=DatasetFilters)


async def collect(
    session: AsyncSession, *, success_threshold: float, filters: DatasetFilters
) -> list[Example]:
    """Return the labelled examples matching ``filters``, oldest first: never a private task,
    never one a curator discarded.

    Raises:
        BadRequest: ``min_confidence`` outside [0, 1], a time without a timezone, or
            ``created_from`` not before ``created_to``.
    """
    if not 0.0 <= filters.min_confidence <= 1.0:
        raise BadRequest("min_confidence must be in [0, 1]")
    for name, value in (("created_from", filters.created_from), ("created_to", filters.created_to)):
        if value is not None and value.tzinfo is None:
            raise BadRequest(f"{name} needs a timezone (e.g. 2026-12-01T00:00:00Z)")
    if (
        filters.created_from is not None
        and filters.created_to is not None
        and filters.created_from >= filters.created_to
    ):
        raise BadRequest("created_from must be before created_to")
    stmt = (
        select(Outcome, Task.description, Agent.name, TaskResult.text, Feedback.correction)
        .join(Task, Task.id == Outcome.task_id)
        .join(Agent, Agent.id == Outcome.agent_id)
        .outerjoin(TaskResult, TaskResult.task_id == Outcome.task_id)
        .outerjoin(Feedback, Feedback.task_id == Outcome.task_id)
        .where(Task.private.is_(False))
        .order_by(Outcome.created_at, Outcome.id)
    )
    if filters.sources is not None:
        stmt = stmt.where(Outcome.label_source.in_(filters.sources))
    if filters.min_confidence > 0:
        stmt = stmt.where(Outcome.label_confidence >= filters.min_confidence)
    if filters.agent_id is not None:
        stmt = stmt.where(Outcome.agent_id == filters.agent_id)
    if filters.created_from is not None:
        stmt = stmt.where(Outcome.created_at >= filters.created_from)
    if filters.created_to is not None:
        stmt = stmt.where(Outcome.created_at < filters.created_to)
    rows = (await session.execute(stmt)).all()
    decisions: dict[uuid.UUID, dict[CurationAction, CurationDecision]] = {}
    task_ids = [row[0].task_id for row in rows]
    if task_ids:
        for d in (
            await session.execute(
                select(CurationDecision)
                .where(CurationDecision.task_id.in_(task_ids))
                .order_by(CurationDecision.created_at, CurationDecision.id)
            )
        ).scalars():
            decisions.setdefault(d.task_id, {})[d.action] = d  # newest of each action wins
    examples: list[Example] = []
    for outcome, description, agent_name, text, correction in rows:
        mine = decisions.get(outcome.task_id, {})
        if CurationAction.DISCARD in mine:
            continue
        ideal_decision = mine.get(CurationAction.IDEAL_RESPONSE)
        router = mine.get(CurationAction.ROUTER_LABEL)
        examples.append(
            Example(
                task_id=outcome.task_id,
                prompt=description,
                complexity=outcome.complexity,
                agent_id=outcome.agent_id,
                agent_name=agent_name,
                answer=text,
                quality=outcome.quality,
                success=outcome.quality >= success_threshold,
                label_source=outcome.label_source.value,
                label_confidence=outcome.label_confidence,
                ideal=ideal_decision.ideal_response if ideal_decision is not None else correction,
                router_agent_id=router.router_agent_id if router is not None else None,
            )
        )
    return examples


def build(kind: DatasetKind, examples: Sequence[Example], filters: DatasetFilters) -> Dataset:
    """Build the rows of ``kind`` from ``examples`` (``datasets.formats``)."""
    pairs = BUILDERS[kind](examples)
    used = {task_id for task_id, _ in pairs}
    return Dataset(
        kind=kind,
        rows=[row for _, row in pairs],
        task_ids=[task_id for task_id, _ in pairs],
        examples=[e for e in examples if e.task_id in used],
        filters=filters,
    )


def jsonl_bytes(rows: Sequence[dict[str, Any]]) -> bytes:
    """Return the canonical JSON Lines of ``rows`` (sorted keys, UTF-8): what is hashed."""
    return b"".join(
        (json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n").encode() for row in rows
    )


def manifest(dataset: Dataset, files: dict[str, str]) -> dict[str, Any]:
    """Return the dataset's manifest: kind, format, counts, filters, source task ids, label
    sources (examples per source), the JSONL's SHA-256 and the files written."""
    sources = Counter(e.label_source for e in dataset.examples)
    n = len(dataset.rows)
    return {
        "kind": dataset.kind.value,
        "format": FORMAT_NAME,
        "created_at": utcnow().isoformat(),
        "rows": n,
        "tasks": len(set(dataset.task_ids)),
        "empty": n == 0,
        "note": "no outcome matched the filters" if n == 0 else "",
        "filters": dataset.filters.as_json(),
        "label_sources": dict(sorted(sources.items())),
        "source_task_ids": sorted({str(t) for t in dataset.task_ids}),
        "sha256": hashlib.sha256(jsonl_bytes(dataset.rows)).hexdigest(),
        "files": files,
    }


def write(dataset: Dataset, directory: Path, *, parquet: bool = True) -> dict[str, Any]:
    """Write ``<kind>.jsonl``, ``<kind>.parquet`` (when ``parquet``) and ``manifest.json``
    into ``directory`` (created); return the manifest. Each file is written beside its name and
    renamed, so a crash leaves no half-written file under it.

    Raises:
        BadRequest: ``parquet`` without pyarrow installed (the ``parquet`` extra).
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = {"jsonl": f"{dataset.kind.value}.jsonl"}
    _atomic_write(directory / files["jsonl"], jsonl_bytes(dataset.rows))
    if parquet:
        files["parquet"] = f"{dataset.kind.value}.parquet"
        _atomic_write(directory / files["parquet"], parquet_bytes(dataset))
    body = manifest(dataset, files)
    _atomic_write(directory / "manifest.json", json.dumps(body, indent=2).encode())
    return body


def parquet_bytes(dataset: Dataset) -> bytes:
    """Return the dataset as a Parquet file (an empty one keeps the kind's columns).

    Raises:
        BadRequest: pyarrow is not installed (``pip install 'dukenet[parquet]'``).
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise BadRequest("Parquet needs pyarrow: pip install 'dukenet[parquet]'") from exc
    table = pa.Table.from_pylist(dataset.rows, schema=_arrow_schema(pa, dataset.kind))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _arrow_schema(pa: Any, kind: DatasetKind) -> Any:
    turns = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    if kind is DatasetKind.SFT:
        return pa.schema([("messages", turns)])
    if kind is DatasetKind.DPO:
        return pa.schema([("prompt", turns), ("chosen", turns), ("rejected", turns)])
    if kind is DatasetKind.KTO:
        return pa.schema([("prompt", turns), ("completion", turns), ("label", pa.bool_())])
    return pa.schema(
        [
            ("task_id", pa.string()),
            ("prompt", pa.string()),
            ("complexity", pa.int64()),
            ("agent_id", pa.string()),
            ("agent_name", pa.string()),
            ("label", pa.bool_()),
            ("quality", pa.float64()),
            ("label_source", pa.string()),
            ("label_confidence", pa.float64()),
            ("router_agent_id", pa.string()),
        ]
    )


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)


async def export(
    session: AsyncSession,
    *,
    kind: DatasetKind,
    success_threshold: float,
    filters: DatasetFilters,
) -> Dataset:
    """Collect and build one dataset (``collect``, ``build``), with what buyers' and curators'
    picks between two answers add: the winner's agent as the router label of both tasks, and
    a DPO pair per pick (label source ``pairwise``; ``comparisons.exports``)."""
    examples = await collect(session, success_threshold=success_threshold, filters=filters)
    examples = await comparison_exports.with_router_labels(session, examples)
    dataset = build(kind, examples, filters)
    if kind is DatasetKind.DPO:
        dataset = await comparison_exports.with_preference_pairs(session, dataset)
    return dataset
