"""Dataset exports over the admin API: the same rows and manifest as ``dukenet datasets export``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Response

from dukenet.datasets import service
from dukenet.datasets.formats import DatasetKind
from dukenet.deps import AdminUser, Session, State
from dukenet.learning.models import LabelSource

router = APIRouter(prefix="/admin/datasets", tags=["datasets"])


@router.get("/{kind}", response_model=None)
async def export_dataset(
    kind: DatasetKind,
    admin: AdminUser,
    session: Session,
    state: State,
    format: Literal["jsonl", "parquet", "manifest"] = "jsonl",
    source: list[LabelSource] | None = Query(default=None),
    min_confidence: float = Query(default=0.0, ge=0.0, le=1.0),
    agent_id: uuid.UUID | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Response | dict[str, Any]:
    """Export a TRL-format dataset (sft, dpo, kto, router) of the labelled outcomes as JSON
    Lines or Parquet, or its manifest (counts, filters, source task ids, label sources, the
    JSONL's SHA-256); private and discarded tasks are never included."""
    filters = service.DatasetFilters(
        sources=None if not source else tuple(source),
        min_confidence=min_confidence,
        agent_id=agent_id,
        created_from=created_from,
        created_to=created_to,
    )
    dataset = await service.export(
        session,
        kind=kind,
        success_threshold=state.settings.success_threshold,
        filters=filters,
    )
    name = kind.value
    if format == "manifest":
        return service.manifest(dataset, {"jsonl": f"{name}.jsonl"})
    if format == "parquet":
        return Response(
            service.parquet_bytes(dataset),
            media_type="application/vnd.apache.parquet",
            headers={"Content-Disposition": f'attachment; filename="{name}.parquet"'},
        )
    return Response(
        service.jsonl_bytes(dataset.rows),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}.jsonl"'},
    )
