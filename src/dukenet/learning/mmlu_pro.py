"""MMLU-Pro: recorded outcomes of 31 LLMs on 7,000 real multiple-choice questions (14 subjects).

The subset shipped in ``dukenet/data/mmlu_pro/`` (made by ``scripts/make_mmlu_pro_subset.py``, see
its ``ATTRIBUTION.md``; Apache-2.0) holds, for every question, whether each of the 31 models
answered it right (MMLU-Pro's own 5-shot scoring) and an *estimated* USD cost of the call. Every
model answered every question, so the data is full information, like RouterBench
(``dukenet.learning.routerbench``), and it comes back in the same types: ``load_mmlu_pro`` gives a
``FullInfoTable`` (what ``benchmarks/`` and ``dukenet.learning.evaluation`` take) and
``mmlu_pro_outcomes`` a ``RecordedOutcomes`` dataset in the long format (what a
``ReplayExecutor`` and ``dukenet replay`` take).

The train/test split is by question, 80/20, stratified by subject and seeded (``split_rows``): the
same seed gives the same split on any machine, and ``seed=0`` is the split the demo and the
benchmarks report.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import math
import operator
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from dukenet.learning.routerbench import FullInfoTable, outcomes_from_table, table_from_outcomes
from dukenet.replay.dataset import SUCCESS_THRESHOLD, DatasetError, RecordedOutcomes, read_outcomes

DATASET_NAME = "mmlu-pro"
"""The dataset's name: replay agents of MMLU-Pro name it in their configuration."""
TEST_SHARE = 0.2
"""Share of each subject's questions on the test side of the split."""
QUESTIONS_FILE = "questions.csv.gz"
OUTCOMES_FILE = "outcomes.csv.gz"
_QUESTION_COLUMNS = ("task_id", "category", "prompt")
_OUTCOME_COLUMNS = ("task_id", "agent", "quality", "cost_usd")

Split = Literal["train", "test"]


def load_mmlu_pro(
    split: Split | None = None, *, path: Path | None = None, seed: int = 0
) -> FullInfoTable:
    """Load MMLU-Pro (or one side of its seeded split) as a full-information table.

    Args:
        split: ``"train"`` (80% of each subject's questions), ``"test"`` (the other 20%) or
            ``None`` (every question), rows in the file's order.
        path: default the subset shipped in the package (7,000 questions x 31 models). A folder
            holding ``questions.csv.gz`` and ``outcomes.csv.gz`` (the shipped layout, ``.csv``
            also read), or one recorded-outcomes file in the long format
            (``dukenet.replay.dataset``, e.g. the full ``mmlu_pro_long.csv.gz`` with 10,300
            questions; slower to read).
        seed: the split's seed (``split_rows``).

    Returns:
        ``FullInfoTable``: ``task_ids`` ``mmlu-pro-<question id>``, ``categories``
        ``mmlu-pro/<subject>``, ``success`` (n_prompts, 31) the recorded verdict (quality >= 0.5),
        ``cost_usd`` the estimated USD per call, ``responses`` all ``""`` (not shipped);
        a (question, model) pair with no row is ``missing`` (a failure at the model's mean cost).

    Raises:
        ValueError: an unknown split.
        DatasetError: a file is missing or malformed (the message names the file, line, column).
    """
    if split not in ("train", "test", None):
        raise ValueError(f"split must be 'train', 'test' or None, not {split!r}")
    table = _read(path)
    if split is None:
        return table
    train, test = split_rows(table.categories, seed=seed)
    return table.subset(train if split == "train" else test)


def mmlu_pro_outcomes(
    split: Split | None = None,
    *,
    path: Path | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> RecordedOutcomes:
    """Return MMLU-Pro (or one side of its split) as a long-format dataset named ``mmlu-pro``.

    ``split``, ``path`` and ``seed`` are as in ``load_mmlu_pro``; ``limit`` keeps the first N
    questions of a seeded, subject-stratified order (``stratified_order``) so that a small limit
    still covers every subject. Tasks carry their subject as ``category`` and
    ``complexity_of(prompt)``; outcomes have quality = success (0/1) and no response text.

    Raises:
        ValueError, DatasetError: as ``load_mmlu_pro``; ``limit`` below 1.
    """
    table = load_mmlu_pro(split, path=path, seed=seed)
    if limit is not None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        table = table.subset(stratified_order(table.categories, seed=seed)[:limit])
    return outcomes_from_table(table, DATASET_NAME)


def split_rows(categories: Sequence[str], *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split rows 80/20 by category: return (train rows, test rows), each sorted ascending.

    Each category (in sorted order) gets a ``numpy.random.default_rng(seed)`` permutation of its
    rows; the first ``round(TEST_SHARE × n)`` go to test. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(categories, dtype=object)
    test: list[np.ndarray] = []
    for category in sorted(set(categories)):
        rows = np.flatnonzero(labels == category)
        test.append(rows[rng.permutation(len(rows))[: round(TEST_SHARE * len(rows))]])
    is_test = np.zeros(len(labels), dtype=bool)
    if test:
        is_test[np.concatenate(test)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def stratified_order(categories: Sequence[str], *, seed: int = 0) -> np.ndarray:
    """Return every row once, in a seeded order whose every prefix is near subject-stratified.

    Each category's rows are permuted (``numpy.random.default_rng(seed)``) and row ``r``-th of
    its category of size ``n`` is placed at ``(r + 0.5) / n``; rows are then sorted by place
    (ties by category name), so the first ``k`` rows hold about ``k × n / N`` of each category.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(categories, dtype=object)
    keyed: list[tuple[float, str, int]] = []
    for category in sorted(set(categories)):
        rows = np.flatnonzero(labels == category)
        shuffled = rows[rng.permutation(len(rows))]
        keyed.extend(((r + 0.5) / len(rows), category, int(row)) for r, row in enumerate(shuffled))
    keyed.sort()
    return np.array([row for _, _, row in keyed], dtype=np.int64)


def _read(path: Path | None) -> FullInfoTable:
    if path is None:
        return _packaged()
    if path.is_file():
        return table_from_outcomes(read_outcomes(path, name=DATASET_NAME))
    return _read_folder(path)


@functools.lru_cache(maxsize=1)
def _packaged() -> FullInfoTable:
    """The shipped subset, read once per process; its arrays are read-only (``subset`` copies)."""
    table = _read_folder(None)
    for array in (table.success, table.cost_usd, table.responses, table.missing):
        array.setflags(write=False)
    return table


def _read_folder(path: Path | None) -> FullInfoTable:
    questions = list(_rows(path, QUESTIONS_FILE, _QUESTION_COLUMNS))
    index: dict[str, int] = {}
    for line, (task_id, _category, _prompt) in questions:
        if task_id in index:
            raise DatasetError(
                f"duplicate task id {task_id!r}", path=_name(path, QUESTIONS_FILE), line=line
            )
        index[task_id] = len(index)
    outcomes_name = _name(path, OUTCOMES_FILE)
    records = list(_rows(path, OUTCOMES_FILE, _OUTCOME_COLUMNS))
    if not records:
        raise DatasetError("no rows", path=outcomes_name)
    lines, cells = zip(*records, strict=True)
    task_ids, agent_names, quality_text, cost_text = zip(*cells, strict=True)
    agents = {a: j for j, a in enumerate(dict.fromkeys(agent_names))}
    for line, task_id in zip(lines, task_ids, strict=True):
        if task_id not in index:
            raise DatasetError(
                f"{task_id!r} is not in {QUESTIONS_FILE}",
                path=outcomes_name,
                line=line,
                column="task_id",
            )
    quality = _numbers(quality_text, lines, outcomes_name, "quality", 1.0)
    cost = _numbers(cost_text, lines, outcomes_name, "cost_usd", math.inf)
    rows = np.array([index[t] for t in task_ids], dtype=np.int64)
    cols = np.array([agents[a] for a in agent_names], dtype=np.int64)
    n, k = len(index), len(agents)
    seen = np.zeros((n, k), dtype=np.int64)
    np.add.at(seen, (rows, cols), 1)
    if (seen > 1).any():
        i, j = np.argwhere(seen > 1)[0]
        raise DatasetError(
            f"duplicate (task {list(index)[i]!r}, agent {list(agents)[j]!r})",
            path=outcomes_name,
            column="agent",
        )
    success = np.zeros((n, k), dtype=bool)
    success[rows, cols] = quality >= SUCCESS_THRESHOLD
    table_cost = np.full((n, k), np.nan)
    table_cost[rows, cols] = cost
    missing = seen == 0
    means = np.nanmean(table_cost, axis=0)
    table_cost = np.where(missing, means[np.newaxis, :], table_cost)
    return FullInfoTable(
        task_ids=tuple(q[1][0] for q in questions),
        prompts=tuple(q[1][2] for q in questions),
        categories=tuple(q[1][1] for q in questions),
        agents=tuple(agents),
        success=success,
        cost_usd=table_cost,
        responses=np.full((n, k), "", dtype=object),
        missing=missing,
        n_missing_cost=int(missing.sum()),
    )


def _numbers(
    texts: Sequence[str], lines: Sequence[int], path: str, column: str, upper: float
) -> np.ndarray:
    """Parse a column of numbers that must lie in [0, ``upper``]; an error names the line."""
    try:
        values = np.array(texts, dtype=np.float64)
    except ValueError:
        values = np.array([_float_or_nan(t) for t in texts])
    bad = ~((values >= 0) & (values <= upper))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"{texts[i]!r} is not a number in [0, {upper:g}]",
            path=path,
            line=lines[i],
            column=column,
        )
    return values


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _name(path: Path | None, file: str) -> str:
    return str(path / file) if path is not None else f"dukenet/data/mmlu_pro/{file}"


def _rows(
    path: Path | None, file: str, columns: tuple[str, ...]
) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Yield (line, cells in ``columns`` order) of a shipped-layout CSV (plain or gzip)."""
    name = _name(path, file)
    try:
        if path is None:
            raw = resources.files("dukenet").joinpath("data", "mmlu_pro", file).read_bytes()
        else:
            plain = path / file.removesuffix(".gz")
            raw = plain.read_bytes() if plain.is_file() else (path / file).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DatasetError(f"cannot read the file: {exc}", path=name) from exc
    if '"' in text:
        csv.field_size_limit(2**31 - 1)
        reader = csv.reader(io.StringIO(text, newline=""))
        records = ((reader.line_num, cells) for cells in reader)
    else:  # no quoted field (the shipped outcomes file): plain splitting, 10x faster
        records = ((n, line.split(",")) for n, line in enumerate(text.splitlines(), start=1))
    first = next(records, None)
    if first is None:
        raise DatasetError("the file is empty (no header row)", path=name, line=1)
    header = first[1]
    positions = []
    for column in columns:
        if column not in header:
            raise DatasetError(
                f"missing (the columns are: {', '.join(header)})", path=name, line=1, column=column
            )
        positions.append(header.index(column))
    pick = operator.itemgetter(*positions)
    width = len(header)
    for line, cells in records:
        if len(cells) != width:
            if not any(c.strip() for c in cells):
                continue
            raise DatasetError(
                f"{len(cells)} fields, but the header has {width}", path=name, line=line
            )
        yield line, pick(cells)
