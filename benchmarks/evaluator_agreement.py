"""How often DukeNET's ``choice`` evaluator agrees with MMLU-Pro's own scoring.

Reads the long recorded-outcomes file (``shared/data/mmlu_pro/mmlu_pro_long.csv.gz``: one row per
question and model, ``quality`` 1.0 when MMLU-Pro's extraction found the gold letter) and, for
each question, takes as gold the letter ``feedback.evaluators.chosen_letter`` reads from most of
the answers MMLU-Pro scored correct (the file has no gold column). Every row of a question with
a gold letter is then checked as a task with ``{"kind": "choice", "reference": gold}`` would be,
and the verdict compared with MMLU-Pro's ``quality``.

    python benchmarks/evaluator_agreement.py \
        ../shared/data/mmlu_pro/mmlu_pro_long.csv.gz --rows 62000

Prints the rows read, those with a gold letter, the agreement and both kinds of disagreement.
"""

from __future__ import annotations

import argparse
import csv
import gzip
from collections import defaultdict
from pathlib import Path

from dukenet.feedback.evaluators import ChoiceSpec, check, chosen_letter


def main() -> None:
    """Parse arguments, score the rows, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="mmlu_pro_long.csv.gz")
    parser.add_argument("--rows", type=int, default=0, help="read only the first N rows (0: all)")
    args = parser.parse_args()
    csv.field_size_limit(10**8)
    rows: list[tuple[str, float, str]] = []
    with gzip.open(args.path, "rt", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if args.rows and i >= args.rows:
                break
            rows.append((row["task_id"], float(row["quality"]), row["response"]))
    votes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for task_id, quality, response in rows:
        letter = chosen_letter(response)
        if quality == 1.0 and letter is not None:
            votes[task_id][letter] += 1
    gold = {t: max(v, key=lambda k: v[k]) for t, v in votes.items()}
    scored = [
        (quality, check(ChoiceSpec(kind="choice", reference=gold[t]), response).quality)
        for t, quality, response in rows
        if t in gold
    ]
    agree = sum(a == b for a, b in scored)
    passed_failed = sum(a == 0.0 and b == 1.0 for a, b in scored)
    failed_passed = sum(a == 1.0 and b == 0.0 for a, b in scored)
    print(
        f"rows {len(rows)}, with a gold letter {len(scored)}: agreement "
        f"{agree / max(len(scored), 1):.4f}; evaluator pass where MMLU-Pro failed "
        f"{passed_failed}, evaluator fail where MMLU-Pro passed {failed_passed}"
    )


if __name__ == "__main__":
    main()
