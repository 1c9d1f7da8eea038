"""Rows of each dataset kind, built from labelled examples (pure functions, no database).

Formats are TRL's conversational ones (https://huggingface.co/docs/trl/dataset_formats):

- ``sft``: ``{"messages": [user, assistant]}``: answers labelled a success, and the ideal
  answers curators wrote or buyers gave as corrections.
- ``dpo``: ``{"prompt": [user], "chosen": [assistant], "rejected": [assistant]}``: for one
  prompt, a successful answer (or an ideal one) against a failed answer.
- ``kto``: ``{"prompt": [user], "completion": [assistant], "label": bool}``: every labelled
  answer, the label being success.
- ``router``: ``{"task_id", "prompt", "complexity", "agent_id", "agent_name", "label",
  "quality", "label_source", "label_confidence", "router_agent_id"}``: which agent did how well
  on which task, and the agent a curator said should have been chosen.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class DatasetKind(StrEnum):
    """The dataset kinds exported."""

    SFT = "sft"
    DPO = "dpo"
    KTO = "kto"
    ROUTER = "router"


@dataclass(frozen=True)
class Example:
    """One labelled outcome as the exporters see it.

    ``answer`` is the agent's result text (None without a result); ``ideal`` the ideal answer a
    curator wrote (or the buyer's correction); ``success`` is ``quality >= success_threshold``.
    """

    task_id: uuid.UUID
    prompt: str
    complexity: int
    agent_id: uuid.UUID
    agent_name: str
    answer: str | None
    quality: float
    success: bool
    label_source: str
    label_confidence: float | None
    ideal: str | None = None
    router_agent_id: uuid.UUID | None = None


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def sft_rows(examples: Sequence[Example]) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    """Return (task id, row) pairs: each successful answer, and each ideal answer."""
    rows: list[tuple[uuid.UUID, dict[str, Any]]] = []
    for e in examples:
        if e.success and e.answer:
            rows.append((e.task_id, {"messages": _user(e.prompt) + _assistant(e.answer)}))
        if e.ideal:
            rows.append((e.task_id, {"messages": _user(e.prompt) + _assistant(e.ideal)}))
    return rows


def dpo_rows(examples: Sequence[Example]) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    """Return (task id of the rejected answer, row) pairs: per prompt, every failed answer
    against the first successful answer to the same prompt (other than itself), or against
    its own ideal answer."""
    good: dict[str, str] = {}
    for e in examples:
        if e.success and e.answer and e.prompt not in good:
            good[e.prompt] = e.answer
    rows: list[tuple[uuid.UUID, dict[str, Any]]] = []
    for e in examples:
        if e.success or not e.answer:
            continue
        chosen = e.ideal or good.get(e.prompt)
        if chosen is None or chosen == e.answer:
            continue
        rows.append(
            (
                e.task_id,
                {
                    "prompt": _user(e.prompt),
                    "chosen": _assistant(chosen),
                    "rejected": _assistant(e.answer),
                },
            )
        )
    return rows


def kto_rows(examples: Sequence[Example]) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    """Return (task id, row) pairs: every answer with its success label; ideal answers as
    desirable completions."""
    rows: list[tuple[uuid.UUID, dict[str, Any]]] = []
    for e in examples:
        if e.answer:
            row = {
                "prompt": _user(e.prompt),
                "completion": _assistant(e.answer),
                "label": e.success,
            }
            rows.append((e.task_id, row))
        if e.ideal:
            row = {"prompt": _user(e.prompt), "completion": _assistant(e.ideal), "label": True}
            rows.append((e.task_id, row))
    return rows


def router_rows(examples: Sequence[Example]) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    """Return (task id, row) pairs: one per outcome, answered or not."""
    return [
        (
            e.task_id,
            {
                "task_id": str(e.task_id),
                "prompt": e.prompt,
                "complexity": e.complexity,
                "agent_id": str(e.agent_id),
                "agent_name": e.agent_name,
                "label": e.success,
                "quality": e.quality,
                "label_source": e.label_source,
                "label_confidence": e.label_confidence,
                "router_agent_id": None if e.router_agent_id is None else str(e.router_agent_id),
            },
        )
        for e in examples
    ]


BUILDERS = {
    DatasetKind.SFT: sft_rows,
    DatasetKind.DPO: dpo_rows,
    DatasetKind.KTO: kto_rows,
    DatasetKind.ROUTER: router_rows,
}
