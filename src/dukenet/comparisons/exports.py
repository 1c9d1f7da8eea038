"""What picked comparisons add to the datasets (``datasets.service.export`` calls these): a
DPO pair per pick (prompt: the task, chosen: the winner's answer, rejected: the loser's; its
label source in the manifest is ``pairwise``) and, in the router data, the winner's agent as
the agent both tasks should have gone to (unless a curator named another)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.comparisons import repository
from dukenet.datasets.formats import Example
from dukenet.feedback import labels
from dukenet.learning.models import LabelSource

if TYPE_CHECKING:  # datasets.service imports this module
    from dukenet.datasets.service import Dataset, DatasetFilters

PAIRWISE = "pairwise"
"""The label source of a DPO pair that comes from a pick."""


def _confidence(source: LabelSource | None) -> float:
    return labels.CURATOR_CONFIDENCE if source is LabelSource.CURATOR else labels.BUYER_CONFIDENCE


def _matches(pair: repository.PickedPair, filters: DatasetFilters) -> bool:
    comparison, winner, loser, _, _ = pair
    if winner.private or loser.private:
        return False
    if filters.sources is not None and comparison.pick_source not in filters.sources:
        return False
    if _confidence(comparison.pick_source) < filters.min_confidence:
        return False
    if filters.agent_id is not None and filters.agent_id not in (winner.agent_id, loser.agent_id):
        return False
    picked = comparison.picked_at
    assert picked is not None
    if filters.created_from is not None and picked < filters.created_from:
        return False
    return filters.created_to is None or picked < filters.created_to


async def _usable_pairs(
    session: AsyncSession, filters: DatasetFilters
) -> list[repository.PickedPair]:
    pairs = [p for p in await repository.picked_pairs(session) if _matches(p, filters)]
    ids = [t.id for p in pairs for t in (p[1], p[2])]
    discarded = await repository.discarded_task_ids(session, ids)
    return [p for p in pairs if p[1].id not in discarded and p[2].id not in discarded]


async def with_router_labels(session: AsyncSession, examples: Sequence[Example]) -> list[Example]:
    """Return ``examples`` with the winner's agent as ``router_agent_id`` of both tasks of
    each picked comparison that has no curator's router label."""
    winners: dict[uuid.UUID, uuid.UUID] = {}
    for _, winner, loser, _, _ in await repository.picked_pairs(session):
        assert winner.agent_id is not None
        winners[winner.id] = winners[loser.id] = winner.agent_id
    return [
        dataclasses.replace(e, router_agent_id=winners[e.task_id])
        if e.router_agent_id is None and e.task_id in winners
        else e
        for e in examples
    ]


def _key(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True)


async def with_preference_pairs(session: AsyncSession, dataset: Dataset) -> Dataset:
    """Return the DPO ``dataset`` with a row per usable pick (neither task private nor
    discarded, within the filters: the picker's label source and confidence, either side's
    agent, the pick's time), keyed by the loser's task id; a row the labels already made is
    replaced by the pick's (counted once, as ``pairwise``). A pick whose answers are missing or
    identical adds nothing."""
    rows = list(dataset.rows)
    task_ids = list(dataset.task_ids)
    examples = list(dataset.examples)
    index = {_key(row): i for i, row in enumerate(rows)}
    drop: set[int] = set()
    added: list[tuple[uuid.UUID, dict[str, Any]]] = []
    for comparison, winner, loser, chosen, rejected in await _usable_pairs(
        session, dataset.filters
    ):
        if not chosen or not rejected or chosen == rejected:
            continue
        row = {
            "prompt": [{"role": "user", "content": winner.description}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
        if _key(row) in index:
            drop.add(index[_key(row)])
        added.append((loser.id, row))
        assert loser.agent_id is not None
        examples.append(
            Example(
                task_id=loser.id,
                prompt=loser.description,
                complexity=loser.complexity,
                agent_id=loser.agent_id,
                agent_name="",
                answer=rejected,
                quality=0.0,
                success=False,
                label_source=PAIRWISE,
                label_confidence=_confidence(comparison.pick_source),
            )
        )
    kept = [i for i in range(len(rows)) if i not in drop]
    return dataclasses.replace(
        dataset,
        rows=[rows[i] for i in kept] + [row for _, row in added],
        task_ids=[task_ids[i] for i in kept] + [task_id for task_id, _ in added],
        examples=examples,
    )
