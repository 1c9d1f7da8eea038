"""Make the MMLU-Pro subset shipped in ``src/dukenet/data/mmlu_pro/`` (deterministic).

Reads the long recorded-outcomes file ``mmlu_pro_long.csv.gz`` (10,300 questions x 31 models;
see ``shared/data/SOURCES.md``), keeps ``--questions`` questions (default 7,000) drawn per subject
in proportion to the subject's share (a seeded permutation of each subject's questions, largest
remainder so the total is exact) with all of their 31 rows, drops the ``response`` column (the
demo and the router need none; it is most of the file), and writes two gzip files (level 9, no
timestamp, so the same input and seed give the same bytes), rows in the source file's order:

- ``questions.csv.gz``: ``task_id``, ``category``, ``prompt``, one row per question;
- ``outcomes.csv.gz``: ``task_id``, ``agent``, ``quality``, ``cost_usd``, one row per
  (question, model).

The prompt is stored once per question rather than on each of its 31 rows: the long file repeats
it 31 times, which makes it 33x larger unpacked and about 20x slower to parse. No value is changed.
``dukenet.learning.mmlu_pro`` reads the pair.

    python scripts/make_mmlu_pro_subset.py ../shared/data/mmlu_pro/mmlu_pro_long.csv.gz \
        src/dukenet/data/mmlu_pro --questions 7000 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

QUESTION_COLUMNS = ("task_id", "category", "prompt")
OUTCOME_COLUMNS = ("task_id", "agent", "quality", "cost_usd")


def stratified_questions(categories: dict[str, str], n_questions: int, seed: int) -> set[str]:
    """Return ``n_questions`` task ids drawn per category in proportion to its size.

    ``categories`` maps task id -> category. Each category gets ``floor(share)`` questions plus
    one for the largest remainders (ties broken by category name); within a category the
    questions are the first of a ``numpy.random.default_rng(seed)`` permutation of its task ids
    in sorted order.
    """
    by_category: dict[str, list[str]] = defaultdict(list)
    for task_id, category in categories.items():
        by_category[category].append(task_id)
    total = len(categories)
    if not 0 < n_questions <= total:
        raise ValueError(f"--questions must be in 1..{total}")
    quotas = {c: n_questions * len(ids) / total for c, ids in by_category.items()}
    counts = {c: math.floor(q) for c, q in quotas.items()}
    left = n_questions - sum(counts.values())
    for c in sorted(quotas, key=lambda c: (-(quotas[c] - counts[c]), c))[:left]:
        counts[c] += 1
    rng = np.random.default_rng(seed)
    keep: set[str] = set()
    for category in sorted(by_category):
        ids = sorted(by_category[category])
        order = rng.permutation(len(ids))
        keep.update(ids[i] for i in order[: counts[category]])
    return keep


def _gzip_csv(rows: list[dict[str, str]], columns: tuple[str, ...], path: Path) -> int:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: row[c] for c in columns} for row in rows)
    data = gzip.compress(buffer.getvalue().encode("utf-8"), compresslevel=9, mtime=0)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    print(f"{path}: {len(rows)} rows, {len(data):,} bytes, sha256 {digest}")
    return len(data)


def main() -> None:
    """Write the subset and print its row counts, sizes and SHA-256s."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="mmlu_pro_long.csv.gz")
    parser.add_argument("output", type=Path, help="the folder to write the two files into")
    parser.add_argument("--questions", type=int, default=7000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    csv.field_size_limit(2**31 - 1)
    with gzip.open(args.source, "rt", encoding="utf-8", newline="") as handle:
        rows = [
            {c: row[c] for c in QUESTION_COLUMNS + OUTCOME_COLUMNS}
            for row in csv.DictReader(handle)
        ]
    categories = {row["task_id"]: row["category"] for row in rows}
    keep = stratified_questions(categories, args.questions, args.seed)
    kept = [row for row in rows if row["task_id"] in keep]
    questions: dict[str, dict[str, str]] = {}
    for row in kept:
        first = questions.setdefault(row["task_id"], row)
        if (first["prompt"], first["category"]) != (row["prompt"], row["category"]):
            raise SystemExit(f"{row['task_id']}: the prompt or category differs between rows")
    args.output.mkdir(parents=True, exist_ok=True)
    size = _gzip_csv(list(questions.values()), QUESTION_COLUMNS, args.output / "questions.csv.gz")
    size += _gzip_csv(kept, OUTCOME_COLUMNS, args.output / "outcomes.csv.gz")
    per_category = Counter(categories[t] for t in keep)
    print(f"{len(keep)} questions, {size:,} bytes in all")
    for category, count in sorted(per_category.items()):
        print(f"  {category:<32} {count:>5}")


if __name__ == "__main__":
    main()
