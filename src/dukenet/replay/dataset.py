"""The long format for recorded outcomes: one row per (task, agent).

Columns (names exact; other columns are ignored):

============  ========  ==========================================================================
column        required  meaning
============  ========  ==========================================================================
task_id       yes       the task's id in the dataset (text, unique per task, at most 200 characters)
prompt        yes       the task's text, the same on every row of the task
agent         yes       the agent (model) that answered; a market agent name (``[\\w.\\-/:@]+``)
quality       one of    the recorded judgement in [0, 1] (a 1-10 score must be mapped first)
success       the two   the recorded verdict, 0/1 (also ``true``/``false``)
cost_usd      yes       what the call cost, in USD (finite, >= 0)
response      no        the recorded answer text
category      no        the task's family (e.g. ``mbpp``), the same on every row of the task
complexity    no        the task's complexity, an integer in 1..10, the same on every row
============  ========  ==========================================================================

With only ``quality``, ``success = quality >= 0.5`` (``SUCCESS_THRESHOLD``); with only
``success``, ``quality = success``; with both, each is taken as recorded. A (task, agent) pair
appears at most once; a pair may be absent (the agent never answered that task).

Files: ``.csv`` (UTF-8, header row), ``.jsonl`` (one JSON object per line; ``null`` is a missing
value) and ``.parquet`` (needs the ``parquet`` extra, pyarrow); ``.csv.gz``/``.jsonl.gz`` are read
compressed. Every error names the file, the line (CSV/JSONL; for Parquet the row) and the column.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

SUCCESS_THRESHOLD = 0.5
"""A recorded quality at or above this counts as a success when no ``success`` is recorded."""

REQUIRED_COLUMNS = ("task_id", "prompt", "agent", "cost_usd")
OPTIONAL_COLUMNS = ("quality", "success", "response", "category", "complexity")
MAX_TASK_ID = 200
"""The longest task id: it travels as the market task's ``external_id``."""
AGENT_NAME = re.compile(r"^[\w.\-/:@]{1,120}$")
Format = Literal["csv", "jsonl", "parquet"]


class DatasetError(ValueError):
    """A recorded-outcomes file is unreadable or violates the long format.

    ``str(error)`` reads ``<path>:<line>: column '<column>': <message>`` (for Parquet the line is
    the 1-based data row, written ``row <n>``); ``path``, ``line`` and ``column`` are kept as
    attributes (``None`` where they do not apply).
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | str,
        line: int | None = None,
        column: str | None = None,
        row_word: str = "line",
    ) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.detail = message
        where = self.path if line is None else f"{self.path}: {row_word} {line}"
        what = message if column is None else f"column {column!r}: {message}"
        super().__init__(f"{where}: {what}")


@dataclass(frozen=True)
class RecordedTask:
    """A task of the dataset: its id, prompt text, optional category and complexity (1..10)."""

    task_id: str
    prompt: str
    category: str | None = None
    complexity: int | None = None


@dataclass(frozen=True)
class RecordedOutcome:
    """One agent's recorded answer to one task: quality in [0, 1], verdict, cost in USD."""

    task_id: str
    agent: str
    quality: float
    success: bool
    cost_usd: float
    response: str | None = None


class Lookup(StrEnum):
    """How a replayed task's record was looked up (``RecordedOutcomes.find``)."""

    HIT = "hit"
    """Exactly one recorded task: the one with the given id (and the same prompt), or, without
    an id, the only task with that prompt."""
    MISSING = "missing"
    """No recorded task has the given id or, without an id, the prompt."""
    AMBIGUOUS = "ambiguous"
    """No id was given and several recorded tasks share the prompt: none is chosen."""
    MISMATCH = "mismatch"
    """The id names a recorded task whose prompt differs from the task's description."""


@dataclass(frozen=True)
class Found:
    """The result of ``RecordedOutcomes.find``: how it went, the task on a hit, and the ids of
    the recorded tasks that matched (several when ambiguous)."""

    lookup: Lookup
    task: RecordedTask | None = None
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordedOutcomes:
    """A recorded-outcomes dataset in the long format, with lookups by task, prompt and agent.

    ``tasks`` and ``agents`` keep their order of first appearance in the file; ``outcomes`` keep
    the file's row order. Tasks may share a prompt text: a replayed task is found by its dataset
    task id (``find``), and by its prompt only when no id is given and the prompt is unique.
    """

    name: str
    tasks: tuple[RecordedTask, ...]
    agents: tuple[str, ...]
    outcomes: tuple[RecordedOutcome, ...]
    _tasks: dict[str, RecordedTask] = field(init=False, repr=False, compare=False)
    _prompts: dict[str, tuple[RecordedTask, ...]] = field(init=False, repr=False, compare=False)
    _pairs: dict[tuple[str, str], RecordedOutcome] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tasks = {t.task_id: t for t in self.tasks}
        by_prompt: dict[str, list[RecordedTask]] = {}
        for t in self.tasks:
            by_prompt.setdefault(t.prompt, []).append(t)
        prompts = {p: tuple(ts) for p, ts in by_prompt.items()}
        pairs = {(o.task_id, o.agent): o for o in self.outcomes}
        if len(tasks) != len(self.tasks):
            raise ValueError("duplicate task ids")
        if len(pairs) != len(self.outcomes):
            raise ValueError("duplicate (task, agent) outcomes")
        if any(o.task_id not in tasks for o in self.outcomes):
            raise ValueError("an outcome refers to an unknown task")
        object.__setattr__(self, "_tasks", tasks)
        object.__setattr__(self, "_prompts", prompts)
        object.__setattr__(self, "_pairs", pairs)

    def task(self, task_id: str) -> RecordedTask | None:
        """Return the task with this id, or None."""
        return self._tasks.get(task_id)

    def tasks_by_prompt(self, prompt: str) -> tuple[RecordedTask, ...]:
        """Return every task whose prompt is exactly ``prompt``, in file order (maybe none)."""
        return self._prompts.get(prompt, ())

    def find(self, prompt: str, task_id: str | None = None) -> Found:
        """Find the recorded task a replayed task stands for (see ``Lookup``).

        With ``task_id`` (the dataset's id, carried as the market task's ``external_id``): that
        task, if its prompt is ``prompt`` (else ``MISMATCH``; unknown id: ``MISSING``). Without:
        the only task whose prompt is exactly ``prompt`` (none: ``MISSING``; several:
        ``AMBIGUOUS``, with their ids in ``candidates``).
        """
        if task_id is not None:
            task = self._tasks.get(task_id)
            if task is None:
                return Found(Lookup.MISSING)
            if task.prompt != prompt:
                return Found(Lookup.MISMATCH, candidates=(task_id,))
            return Found(Lookup.HIT, task, (task_id,))
        matches = self.tasks_by_prompt(prompt)
        ids = tuple(t.task_id for t in matches)
        if not matches:
            return Found(Lookup.MISSING)
        if len(matches) > 1:
            return Found(Lookup.AMBIGUOUS, candidates=ids)
        return Found(Lookup.HIT, matches[0], ids)

    def outcome(self, task_id: str, agent: str) -> RecordedOutcome | None:
        """Return ``agent``'s recorded outcome on the task, or None if it was not recorded."""
        return self._pairs.get((task_id, agent))

    def mean_cost_usd(self) -> dict[str, float]:
        """Return each agent's mean recorded cost per call in USD (over its recorded rows)."""
        totals: dict[str, list[float]] = {a: [] for a in self.agents}
        for o in self.outcomes:
            totals[o.agent].append(o.cost_usd)
        return {a: math.fsum(c) / len(c) for a, c in totals.items()}

    def subset(self, task_ids: Iterable[str]) -> RecordedOutcomes:
        """Return the dataset restricted to these tasks (in the given order)."""
        keep = [self._tasks[t] for t in task_ids]
        wanted = {t.task_id for t in keep}
        outcomes = tuple(o for o in self.outcomes if o.task_id in wanted)
        agents = tuple(a for a in self.agents if any(o.agent == a for o in outcomes))
        return RecordedOutcomes(self.name, tuple(keep), agents, outcomes)

    @classmethod
    def concat(cls, name: str, parts: Sequence[RecordedOutcomes]) -> RecordedOutcomes:
        """Join datasets with disjoint task ids into one named ``name``.

        Raises:
            ValueError: a task id appears in two parts.
        """
        agents: dict[str, None] = {}
        for part in parts:
            agents.update(dict.fromkeys(part.agents))
        return cls(
            name,
            tuple(t for part in parts for t in part.tasks),
            tuple(agents),
            tuple(o for part in parts for o in part.outcomes),
        )


def dataset_name(path: Path) -> str:
    """Return the default dataset name of a file: its name without the format suffixes."""
    name = path.name
    for suffix in (".gz", ".csv", ".jsonl", ".parquet"):
        name = name.removesuffix(suffix)
    return name or "dataset"


def format_of(path: Path) -> Format:
    """Return the format a file's suffix names (``.csv``, ``.jsonl``, ``.parquet``, + ``.gz``).

    Raises:
        DatasetError: an unknown suffix.
    """
    name = path.name.lower().removesuffix(".gz")
    for fmt in ("csv", "jsonl", "parquet"):
        if name.endswith("." + fmt):
            return fmt
    if name.endswith(".ndjson"):
        return "jsonl"
    raise DatasetError(
        "unknown format: expected .csv, .jsonl or .parquet (optionally .gz)", path=path
    )


def read_outcomes(
    path: Path, *, fmt: Format | None = None, name: str | None = None
) -> RecordedOutcomes:
    """Read a recorded-outcomes file in the long format (see the module docstring).

    Args:
        path: the file; ``fmt`` overrides the format its suffix names.
        name: the dataset's name (default: the file name without its suffixes).

    Raises:
        DatasetError: the file is missing or unreadable, a required column is missing, a value is
            invalid (quality outside [0, 1], a cost that is not a finite number >= 0, ...), a
            (task, agent) pair is duplicated, or a task's prompt/category/complexity differs
            between its rows. The message names the file, line and column.
    """
    fmt = fmt or format_of(path)
    if not path.is_file():
        raise DatasetError("no such file", path=path)
    rows: Iterator[tuple[int, Mapping[str, Any]]]
    row_word = "line"
    if fmt == "csv":
        columns, rows = _csv_rows(path)
    elif fmt == "jsonl":
        columns, rows = None, _jsonl_rows(path)
    else:
        columns, rows = _parquet_rows(path)
        row_word = "row"
    if columns is not None:
        _check_columns(columns, path, line=None if fmt == "parquet" else 1)
    builder = _Builder(name or dataset_name(path), path, row_word)
    for line, row in rows:
        builder.add(line, row)
    return builder.build()


def write_outcomes(outcomes: RecordedOutcomes, path: Path, *, fmt: Format | None = None) -> None:
    """Write a dataset in the long format (CSV, JSONL or Parquet by suffix; ``.gz`` compresses).

    Every column is written; ``response``, ``category`` and ``complexity`` may be empty.
    """
    fmt = fmt or format_of(path)
    records = [
        {
            "task_id": o.task_id,
            "prompt": task.prompt,
            "agent": o.agent,
            "quality": o.quality,
            "success": int(o.success),
            "cost_usd": o.cost_usd,
            "response": o.response,
            "category": task.category,
            "complexity": task.complexity,
        }
        for o in outcomes.outcomes
        for task in (outcomes._tasks[o.task_id],)
    ]
    if fmt == "parquet":
        pyarrow, parquet = _pyarrow(path)
        parquet.write_table(pyarrow.Table.from_pylist(records), path)
        return
    buffer = io.StringIO(newline="")
    if fmt == "csv":
        writer = csv.DictWriter(buffer, fieldnames=list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS))
        writer.writeheader()
        for record in records:
            writer.writerow({k: "" if v is None else v for k, v in record.items()})
    else:
        for record in records:
            buffer.write(json.dumps(record, ensure_ascii=False) + "\n")
    data = buffer.getvalue().encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        return raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise DatasetError(f"cannot read the file: {exc}", path=path) from exc


def _csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, Mapping[str, Any]]]]:
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(_text(path), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError("the file is empty (no header row)", path=path, line=1) from None
    except csv.Error as exc:
        raise DatasetError(f"malformed CSV: {exc}", path=path, line=1) from exc
    header = [h.strip() for h in header]

    def rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DatasetError(f"malformed CSV: {exc}", path=path, line=start) from exc
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise DatasetError(
                    f"{len(cells)} fields, but the header has {len(header)}", path=path, line=start
                )
            yield start, {h: (c if c.strip() else None) for h, c in zip(header, cells, strict=True)}

    return header, rows()


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for number, text in enumerate(_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"invalid JSON: {exc.msg}", path=path, line=number) from exc
        if not isinstance(row, dict):
            raise DatasetError("each line must be a JSON object", path=path, line=number)
        _check_columns(list(row), path, line=number)
        yield number, row


def _pyarrow(path: Path) -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet as parquet
    except ImportError as exc:
        raise DatasetError(
            "reading Parquet needs pyarrow: pip install 'dukenet[parquet]'", path=path
        ) from exc
    return pyarrow, parquet


def _parquet_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, Mapping[str, Any]]]]:
    _, parquet = _pyarrow(path)
    try:
        parquet_file = parquet.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError subclasses
        raise DatasetError(f"not a readable Parquet file: {exc}", path=path) from exc
    columns = list(parquet_file.schema_arrow.names)

    def rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
        number = 0
        for batch in parquet_file.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                number += 1
                yield number, row

    return columns, rows()


def _check_columns(columns: Sequence[str], path: Path, *, line: int | None) -> None:
    present = set(columns)
    for column in REQUIRED_COLUMNS:
        if column not in present:
            raise DatasetError(
                f"missing (the columns are: {', '.join(columns)})",
                path=path,
                line=line,
                column=column,
            )
    if "quality" not in present and "success" not in present:
        raise DatasetError(
            "missing: give 'quality' (0..1) or 'success' (0/1)",
            path=path,
            line=line,
            column="quality",
        )


class _Builder:
    """Validates rows one by one and assembles the dataset."""

    def __init__(self, name: str, path: Path, row_word: str) -> None:
        self.name, self.path, self.row_word = name, path, row_word
        self.tasks: dict[str, tuple[RecordedTask, int]] = {}
        self.agents: dict[str, None] = {}
        self.outcomes: list[RecordedOutcome] = []
        self.seen: dict[tuple[str, str], int] = {}

    def error(self, message: str, line: int, column: str | None = None) -> DatasetError:
        return DatasetError(
            message, path=self.path, line=line, column=column, row_word=self.row_word
        )

    def add(self, line: int, row: Mapping[str, Any]) -> None:
        task_id = self.text(row, "task_id", line)
        if len(task_id) > MAX_TASK_ID:
            raise self.error(
                f"{len(task_id)} characters; a task id has at most {MAX_TASK_ID}", line, "task_id"
            )
        prompt = self.text(row, "prompt", line)
        agent = self.text(row, "agent", line)
        if not AGENT_NAME.match(agent):
            raise self.error(
                f"{agent!r} is not a valid agent name (letters, digits and _ . - / : @, "
                "at most 120)",
                line,
                "agent",
            )
        cost = self.number(row, "cost_usd", line)
        if cost is None:
            raise self.error("empty; the cost in USD is required", line, "cost_usd")
        if cost < 0:
            raise self.error(f"{cost} is negative", line, "cost_usd")
        quality = self.number(row, "quality", line)
        if quality is not None and not 0.0 <= quality <= 1.0:
            raise self.error(f"{quality} is outside [0, 1]", line, "quality")
        success = self.flag(row, "success", line)
        if quality is None and success is None:
            raise self.error("neither 'quality' nor 'success' is given", line, "quality")
        if success is None:
            assert quality is not None
            success = quality >= SUCCESS_THRESHOLD
        if quality is None:
            quality = float(success)
        category = self.optional_text(row, "category")
        complexity = self.complexity(row, line)
        response = row.get("response")
        task = RecordedTask(task_id, prompt, category, complexity)
        known = self.tasks.get(task_id)
        if known is None:
            self.tasks[task_id] = (task, line)
        else:
            first, first_line = known
            for column in ("prompt", "category", "complexity"):
                if getattr(first, column) != getattr(task, column):
                    raise self.error(
                        f"differs from task {task_id!r} on {self.row_word} {first_line}",
                        line,
                        column,
                    )
        key = (task_id, agent)
        if key in self.seen:
            raise self.error(
                f"duplicate (task {task_id!r}, agent {agent!r}); first on {self.row_word} "
                f"{self.seen[key]}",
                line,
                "agent",
            )
        self.seen[key] = line
        self.agents.setdefault(agent, None)
        self.outcomes.append(
            RecordedOutcome(
                task_id=task_id,
                agent=agent,
                quality=float(quality),
                success=bool(success),
                cost_usd=float(cost),
                response=None if response is None else str(response),
            )
        )

    def build(self) -> RecordedOutcomes:
        if not self.outcomes:
            raise DatasetError("no rows", path=self.path)
        return RecordedOutcomes(
            self.name,
            tuple(task for task, _ in self.tasks.values()),
            tuple(self.agents),
            tuple(self.outcomes),
        )

    def text(self, row: Mapping[str, Any], column: str, line: int) -> str:
        value = row.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise self.error("empty", line, column)
        if not isinstance(value, str | int):
            raise self.error(f"expected text, got {value!r}", line, column)
        return str(value).strip() if column != "prompt" else str(value)

    def optional_text(self, row: Mapping[str, Any], column: str) -> str | None:
        value = row.get(column)
        if value is None or not str(value).strip():
            return None
        return str(value).strip()

    def number(self, row: Mapping[str, Any], column: str, line: int) -> float | None:
        value = row.get(column)
        if value is None:
            return None
        if isinstance(value, bool):
            raise self.error(f"expected a number, got {value!r}", line, column)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self.error(f"{value!r} is not a number", line, column) from None
        if not math.isfinite(number):
            raise self.error(f"{value!r} is not a finite number", line, column)
        return number

    def flag(self, row: Mapping[str, Any], column: str, line: int) -> bool | None:
        value = row.get(column)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "1.0", "true"):
            return True
        if text in ("0", "0.0", "false"):
            return False
        raise self.error(f"{value!r} is not 0/1 (or true/false)", line, column)

    def complexity(self, row: Mapping[str, Any], line: int) -> int | None:
        number = self.number(row, "complexity", line)
        if number is None:
            return None
        if number != int(number) or not 1 <= number <= 10:
            raise self.error(f"{number:g} is not an integer in 1..10", line, "complexity")
        return int(number)
