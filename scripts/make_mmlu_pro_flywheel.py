"""Make the MMLU-Pro answers the flywheel replays (``src/dukenet/data/mmlu_pro/flywheel.csv.gz``).

Reads the long recorded-outcomes file ``mmlu_pro_long.csv.gz`` (10,300 questions x 31 models, with
each model's chain-of-thought answer; see ``shared/data/SOURCES.md``) and keeps, for ``--questions``
questions, the rows of four models of different strength whose answers are short enough for a
135M model to train on in CPU minutes: ``Meta-Llama-3_1-70B-Instruct``, ``gemini-1.5-flash-002``,
``Mixtral-8x7B-Instruct-v0.1`` and ``Llama-2-7b-hf``. A question is kept when

- its prompt has at most ``--max-prompt`` characters and each of the four answers at most
  ``--max-response`` characters (so nothing is cut), and
- it has a gold letter: the letter ``feedback.evaluators.chosen_letter`` reads from most of the
  answers MMLU-Pro scored correct, over all 31 models (the source has no gold column; as
  ``benchmarks/evaluator_agreement.py``).

Questions are taken in a seeded permutation of the file's questions (``numpy`` ``default_rng``),
written in that order; the ``gold`` column is added, no value is changed. Gzip level 9 with no
timestamp, so the same input and arguments give the same bytes.

    python scripts/make_mmlu_pro_flywheel.py ../shared/data/mmlu_pro/mmlu_pro_long.csv.gz \
        src/dukenet/data/mmlu_pro/flywheel.csv.gz --questions 1200 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from dukenet.feedback.evaluators import chosen_letter

MODELS = (
    "Meta-Llama-3_1-70B-Instruct",
    "gemini-1.5-flash-002",
    "Mixtral-8x7B-Instruct-v0.1",
    "Llama-2-7b-hf",
)
COLUMNS = ("task_id", "prompt", "agent", "quality", "cost_usd", "category", "gold", "response")


def main() -> None:
    """Parse arguments, select the questions, write the file and print its size and hash."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="mmlu_pro_long.csv.gz")
    parser.add_argument("out", type=Path, help="the .csv.gz to write")
    parser.add_argument("--questions", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-prompt", type=int, default=1200, help="characters")
    parser.add_argument("--max-response", type=int, default=800, help="characters")
    args = parser.parse_args()
    csv.field_size_limit(10**8)
    order: list[str] = []
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    kept: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    with gzip.open(args.source, "rt", newline="") as f:
        for row in csv.DictReader(f):
            task_id = row["task_id"]
            if task_id not in votes:
                order.append(task_id)
                votes[task_id] = Counter()
            if float(row["quality"]) == 1.0:
                letter = chosen_letter(row["response"])
                if letter is not None:
                    votes[task_id][letter] += 1
            if row["agent"] in MODELS:
                kept[task_id][row["agent"]] = row
    chosen: list[str] = []
    for i in np.random.default_rng(args.seed).permutation(len(order)):
        task_id = order[int(i)]
        rows = kept[task_id]
        if (
            votes[task_id]
            and len(rows) == len(MODELS)
            and len(rows[MODELS[0]]["prompt"]) <= args.max_prompt
            and all(len(r["response"]) <= args.max_response for r in rows.values())
        ):
            chosen.append(task_id)
            if len(chosen) == args.questions:
                break
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for task_id in chosen:
        gold = votes[task_id].most_common(1)[0][0]
        for model in MODELS:
            r = kept[task_id][model]
            writer.writerow([r["task_id"], r["prompt"], model, r["quality"], r["cost_usd"],
                             r["category"], gold, r["response"]])  # fmt: skip
    data = gzip.compress(text.getvalue().encode(), compresslevel=9, mtime=0)
    args.out.write_bytes(data)
    print(
        f"{len(chosen)} questions, {len(chosen) * len(MODELS)} rows, {len(data):,} bytes, "
        f"sha256 {hashlib.sha256(data).hexdigest()}"
    )


if __name__ == "__main__":
    main()
