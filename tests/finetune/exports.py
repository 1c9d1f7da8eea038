"""Real exports for the fine-tuning tests: MMLU-Pro questions with recorded models' answers
(``tests/data/mmlu_pro_pairs.csv.gz``), labelled by their recorded correctness and written by
the dataset exporter itself (``datasets.service.build`` / ``write``), manifest included."""

from __future__ import annotations

import csv
import gzip
import uuid
from pathlib import Path
from typing import Any

from dukenet.datasets import service
from dukenet.datasets.formats import DatasetKind, Example

DATA = Path(__file__).parents[1] / "data" / "mmlu_pro_pairs.csv.gz"
FAST: dict[str, Any] = {"max_steps": 1, "batch_size": 2, "max_length": 256, "eval_share": 0.34}
"""TrainConfig settings for one quick step on the tiny random model."""


def examples(questions: int | None = None) -> list[Example]:
    """Return the sample's answers as labelled examples, for the first ``questions`` questions
    (all when None)."""
    with gzip.open(DATA, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = sorted({r["task_id"] for r in rows})[:questions]
    return [
        Example(
            task_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{r['task_id']}/{r['agent']}"),
            prompt=r["prompt"],
            complexity=5,
            agent_id=uuid.uuid5(uuid.NAMESPACE_URL, r["agent"]),
            agent_name=r["agent"],
            answer=r["response"],
            quality=float(r["quality"]),
            success=float(r["quality"]) >= 0.5,
            label_source="evaluator",
            label_confidence=1.0,
        )
        for r in rows
        if r["task_id"] in keep
    ]


def write_export(kind: str, directory: Path, *, questions: int | None = None) -> Path:
    """Write the ``kind`` export of the first ``questions`` questions into ``directory``."""
    dataset = service.build(DatasetKind(kind), examples(questions), service.DatasetFilters())
    service.write(dataset, directory, parquet=True)
    return directory
