"""RouterBench (RouterDC's 0-shot export): recorded outcomes of 11 LLMs on 3,178 real prompts.

Every prompt was answered by every model, so the data is *full information*: for any routing
policy we can look up whether the chosen model was right and what the call cost. See
``dukenet/data/routerbench/ATTRIBUTION.md`` for the source and the licence caveat (no licence
stated: internal evaluation only).
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from dukenet.learning.features import MAX_COMPLEXITY, MIN_COMPLEXITY, TaskFeatures
from dukenet.learning.router import OutcomeSample
from dukenet.replay.dataset import RecordedOutcome, RecordedOutcomes, RecordedTask

CATEGORY_FILES: tuple[tuple[str, str], ...] = (
    ("arc-challenge", "arc_challenge"),
    ("mbpp", "mbpp"),
    ("winogrande", "winograde"),
)
"""(category as in the ``eval_name`` column, file stem) for the three RouterBench tasks shipped."""

_RESPONSE_SUFFIX = "|model_response"
_COST_SUFFIX = "|total_cost"
_CODE_REQUEST = re.compile(
    r"\b(write|implement|create|define|code)\b[^.\n]{0,80}"
    r"\b(function|program|script|class|method|query|regex|code)\b",
    re.IGNORECASE,
)
_OPTION_LINE = re.compile(r"^\s*[A-H]\)", re.MULTILINE)


@dataclass(frozen=True)
class FullInfoTable:
    """Outcomes of every agent on every prompt (full information).

    Attributes:
        task_ids: (n_prompts,) unique task ids: the RouterBench ``sample_id``, with ``#<row index>``
            appended on rows that have a blank cell (RouterBench split some prompts into two such
            rows sharing one ``sample_id``).
        prompts: (n_prompts,) prompt texts.
        categories: (n_prompts,) task family (``arc-challenge``, ``mbpp``, ``winogrande``).
        agents: (n_agents,) model names, in the files' column order.
        success: (n_prompts, n_agents) bool; a blank correctness cell counts as a failure.
        cost_usd: (n_prompts, n_agents) float64 USD per call; a blank cell is the model's mean.
        responses: (n_prompts, n_agents) object array of ``str``, the recorded answer text.
        missing: (n_prompts, n_agents) bool, true where the correctness cell was blank.
        n_missing_cost: number of blank cost cells that were filled with the model's mean.
    """

    task_ids: tuple[str, ...]
    prompts: tuple[str, ...]
    categories: tuple[str, ...]
    agents: tuple[str, ...]
    success: np.ndarray
    cost_usd: np.ndarray
    responses: np.ndarray
    missing: np.ndarray
    n_missing_cost: int = 0

    def __post_init__(self) -> None:
        n, k = len(self.task_ids), len(self.agents)
        if len(self.prompts) != n or len(self.categories) != n:
            raise ValueError("task_ids, prompts and categories must have the same length")
        for name in ("success", "cost_usd", "responses", "missing"):
            if getattr(self, name).shape != (n, k):
                raise ValueError(f"{name} must have shape (n_prompts, n_agents) = {(n, k)}")

    @property
    def n_prompts(self) -> int:
        """Number of prompts (rows)."""
        return len(self.task_ids)

    @property
    def n_agents(self) -> int:
        """Number of agents (columns)."""
        return len(self.agents)

    def complexities(self) -> np.ndarray:
        """Return each prompt's ``complexity_of``, shape (n_prompts,), int64 in 1..10."""
        return np.array([complexity_of(text) for text in self.prompts], dtype=np.int64)

    def tasks(self) -> list[TaskFeatures]:
        """Return the prompts as ``TaskFeatures`` (text and derived complexity), one per row."""
        return [TaskFeatures(text, complexity_of(text)) for text in self.prompts]

    def mean_cost_usd(self) -> np.ndarray:
        """Return each agent's mean recorded cost per call in USD, shape (n_agents,)."""
        return np.asarray(self.cost_usd.mean(axis=0), dtype=np.float64)

    def subset(self, rows: Sequence[int] | np.ndarray) -> FullInfoTable:
        """Return the table restricted to the given row positions (in that order)."""
        index = np.asarray(rows, dtype=np.int64)
        return FullInfoTable(
            task_ids=tuple(self.task_ids[i] for i in index),
            prompts=tuple(self.prompts[i] for i in index),
            categories=tuple(self.categories[i] for i in index),
            agents=self.agents,
            success=self.success[index],
            cost_usd=self.cost_usd[index],
            responses=self.responses[index],
            missing=self.missing[index],
            n_missing_cost=self.n_missing_cost,
        )


def complexity_of(prompt_text: str) -> int:
    """Derive a task complexity in 1..10 from its text alone (deterministic, no model).

    Rule: take the *question*, i.e. the last paragraph that is not blank (few-shot prompts put the
    worked examples first and the real question last), count its words ``w`` and score ``1 +
    round(log2(1 + w / 8))`` (8 words -> 2, 24 -> 3, 56 -> 4, 120 -> 5, 248 -> 6). A request to
    write code (e.g. "write a function") adds 3; a multiple-choice question (at least two
    ``A)``-style option lines) subtracts 1 (picking an option is easier than producing an answer).
    The result is clipped to 1..10. On RouterBench this gives winogrande 2-3, arc-challenge 3-4 and
    mbpp 5-7.
    """
    paragraphs = [part for part in re.split(r"\n\s*\n", prompt_text) if part.strip()]
    question = paragraphs[-1] if paragraphs else ""
    n_words = len(question.split())
    score = 1 + round(math.log2(1.0 + n_words / 8.0))
    if _CODE_REQUEST.search(question) or "```" in question:
        score += 3
    if len(_OPTION_LINE.findall(question)) >= 2:
        score -= 1
    return int(min(max(score, MIN_COMPLEXITY), MAX_COMPLEXITY))


def load_routerbench(
    split: Literal["train", "test"], data_dir: Path | None = None
) -> FullInfoTable:
    """Load a RouterBench split (2,225 train or 953 test prompts x 11 models) as a table.

    Args:
        split: ``"train"`` or ``"test"``.
        data_dir: folder holding ``{arc_challenge,mbpp,winograde}_{split}.csv`` (or ``.csv.gz``);
            default: the gzip files shipped in ``dukenet/data/routerbench``.

    Raises:
        ValueError: on an unknown split, inconsistent model columns or duplicate task ids.
        FileNotFoundError: when a file is missing from ``data_dir``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    csv.field_size_limit(10**9)
    agents: tuple[str, ...] | None = None
    task_ids: list[str] = []
    prompts: list[str] = []
    categories: list[str] = []
    success_rows: list[list[bool]] = []
    missing_rows: list[list[bool]] = []
    cost_rows: list[list[float]] = []
    response_rows: list[list[str]] = []
    for _category, stem in CATEGORY_FILES:
        for row in _read_rows(f"{stem}_{split}.csv", data_dir):
            file_agents = _agents_of(row)
            if agents is None:
                agents = file_agents
            elif file_agents != agents:
                raise ValueError(f"{stem}_{split}.csv has different model columns")
            cells = [row[agent].strip() for agent in agents]
            blank = [cell == "" for cell in cells]
            task_ids.append(f"{row['sample_id']}#{row['']}" if any(blank) else row["sample_id"])
            prompts.append(_join_list_string(row["prompt"]))
            categories.append(row["eval_name"])
            missing_rows.append(blank)
            success_rows.append([cell != "" and float(cell) >= 0.5 for cell in cells])
            cost_rows.append([_float_or_nan(row[agent + _COST_SUFFIX]) for agent in agents])
            response_rows.append(
                [_join_list_string(row[agent + _RESPONSE_SUFFIX]) for agent in agents]
            )
    if agents is None:
        raise ValueError("no rows found")
    duplicates = [key for key, count in Counter(task_ids).items() if count > 1]
    if duplicates:
        raise ValueError(f"duplicate task ids: {duplicates[:5]}")
    cost = np.array(cost_rows, dtype=np.float64)
    blank_cost = np.isnan(cost)
    if blank_cost.all(axis=0).any():
        raise ValueError("a model has no recorded cost at all")
    column_mean = np.nanmean(cost, axis=0)
    cost = np.where(blank_cost, column_mean[np.newaxis, :], cost)
    responses = np.empty((len(task_ids), len(agents)), dtype=object)
    for i, texts in enumerate(response_rows):
        responses[i, :] = texts
    return FullInfoTable(
        task_ids=tuple(task_ids),
        prompts=tuple(prompts),
        categories=tuple(categories),
        agents=agents,
        success=np.array(success_rows, dtype=bool),
        cost_usd=cost,
        responses=responses,
        missing=np.array(missing_rows, dtype=bool),
        n_missing_cost=int(blank_cost.sum()),
    )


def routerbench_outcomes(
    split: Literal["train", "test", "all"], data_dir: Path | None = None
) -> RecordedOutcomes:
    """Return RouterBench in the long recorded-outcomes format (the adapter from its wide CSV).

    One outcome per (prompt, model) cell with a recorded judgement: quality = success (0/1), the
    recorded cost in USD and answer text; the task carries its category and ``complexity_of``
    its prompt. Blank correctness cells (``FullInfoTable.missing``) are left out: nothing was
    recorded there. ``"all"`` joins train and test (their task ids are disjoint). The dataset is
    named ``routerbench``.

    Raises:
        ValueError, FileNotFoundError: as ``load_routerbench``.
    """
    splits: tuple[Literal["train", "test"], ...] = ("train", "test") if split == "all" else (split,)
    parts = [outcomes_from_table(load_routerbench(s, data_dir), "routerbench") for s in splits]
    return parts[0] if len(parts) == 1 else RecordedOutcomes.concat("routerbench", parts)


def outcomes_from_table(table: FullInfoTable, name: str) -> RecordedOutcomes:
    """Return a full-information table in the long recorded-outcomes format, named ``name``.

    One outcome per cell that is not ``missing``: quality = success (0/1), the recorded cost in
    USD and the answer text; each task carries its category (``None`` where it is ``""``) and
    ``complexity_of`` its prompt.
    """
    tasks = tuple(
        RecordedTask(task_id, prompt, category or None, complexity_of(prompt))
        for task_id, prompt, category in zip(
            table.task_ids, table.prompts, table.categories, strict=True
        )
    )
    outcomes = tuple(
        RecordedOutcome(
            task_id=table.task_ids[i],
            agent=agent,
            quality=float(table.success[i, j]),
            success=bool(table.success[i, j]),
            cost_usd=float(table.cost_usd[i, j]),
            response=str(table.responses[i, j]),
        )
        for i in range(table.n_prompts)
        for j, agent in enumerate(table.agents)
        if not table.missing[i, j]
    )
    return RecordedOutcomes(name, tasks, table.agents, outcomes)


def table_from_outcomes(outcomes: RecordedOutcomes) -> FullInfoTable:
    """Return a long-format dataset as a full-information table (tasks x agents).

    A (task, agent) pair with no recorded outcome is ``missing``: a failure, its cost the agent's
    mean recorded cost (counted in ``n_missing_cost``) and its response ``""``. A task's category
    defaults to ``""``. ``success`` is the recorded verdict (quality >= 0.5 when only a quality
    was recorded).
    """
    n, k = len(outcomes.tasks), len(outcomes.agents)
    row = {t.task_id: i for i, t in enumerate(outcomes.tasks)}
    col = {a: j for j, a in enumerate(outcomes.agents)}
    success = np.zeros((n, k), dtype=bool)
    missing = np.ones((n, k), dtype=bool)
    cost = np.full((n, k), np.nan)
    responses = np.full((n, k), "", dtype=object)
    for o in outcomes.outcomes:
        i, j = row[o.task_id], col[o.agent]
        success[i, j], missing[i, j], cost[i, j] = o.success, False, o.cost_usd
        responses[i, j] = o.response or ""
    means = outcomes.mean_cost_usd()
    blank = np.isnan(cost)
    cost = np.where(blank, np.array([means[a] for a in outcomes.agents])[np.newaxis, :], cost)
    return FullInfoTable(
        task_ids=tuple(t.task_id for t in outcomes.tasks),
        prompts=tuple(t.prompt for t in outcomes.tasks),
        categories=tuple(t.category or "" for t in outcomes.tasks),
        agents=outcomes.agents,
        success=success,
        cost_usd=cost,
        responses=responses,
        missing=missing,
        n_missing_cost=int(blank.sum()),
    )


def full_information_samples(
    table: FullInfoTable, rows: Sequence[int] | np.ndarray | None = None
) -> list[OutcomeSample]:
    """Expand prompts x agents into ``OutcomeSample``s (every agent's outcome on every prompt).

    Args:
        table: the full-information table.
        rows: prompt positions to use (default: all); gives ``len(rows) * n_agents`` samples.
    """
    index = range(table.n_prompts) if rows is None else [int(i) for i in rows]
    complexities = [complexity_of(table.prompts[i]) for i in index]
    return [
        OutcomeSample(
            task_id=table.task_ids[i],
            description=table.prompts[i],
            complexity=complexity,
            agent=agent,
            success=bool(table.success[i, j]),
        )
        for i, complexity in zip(index, complexities, strict=True)
        for j, agent in enumerate(table.agents)
    ]


def _read_rows(name: str, data_dir: Path | None) -> Iterator[dict[str, str]]:
    """Yield the CSV rows of ``name`` from ``data_dir`` (plain or gzip) or the packaged file."""
    if data_dir is None:
        packaged = resources.files("dukenet").joinpath("data", "routerbench", name + ".gz")
        raw = packaged.read_bytes()
    else:
        plain, zipped = data_dir / name, data_dir / (name + ".gz")
        if plain.exists():
            raw = plain.read_bytes()
            yield from csv.DictReader(io.StringIO(raw.decode("utf-8"), newline=""))
            return
        raw = zipped.read_bytes()
    text = gzip.decompress(raw).decode("utf-8")
    yield from csv.DictReader(io.StringIO(text, newline=""))


def _agents_of(row: dict[str, str]) -> tuple[str, ...]:
    """Return the model names: the columns between ``eval_name`` and the first ``|`` column."""
    keys = list(row)
    start = keys.index("eval_name") + 1
    names: list[str] = []
    for key in keys[start:]:
        if "|" in key or key == "oracle_model_to_route_to":
            break
        names.append(key)
    return tuple(names)


def _join_list_string(cell: str) -> str:
    """Parse a Python-list string such as ``"['a', 'b']"`` and join its parts with newlines."""
    text = cell.strip()
    if not text.startswith("["):
        return text
    try:
        parts = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(parts, list):
        return "\n".join(str(part) for part in parts)
    return text


def _float_or_nan(cell: str) -> float:
    """Parse a float cell; a blank cell is NaN."""
    text = cell.strip()
    return float(text) if text else math.nan
