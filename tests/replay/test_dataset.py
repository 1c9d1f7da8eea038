"""The long recorded-outcomes format: CSV, JSONL and Parquet readers, the writer, and errors that
name the file, line and column."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dukenet.replay.dataset import (
    DatasetError,
    RecordedOutcomes,
    dataset_name,
    read_outcomes,
    write_outcomes,
)

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_qa.csv"
ROW: dict[str, Any] = {
    "task_id": "t1",
    "prompt": "What is 2 + 2?",
    "agent": "bot-a",
    "quality": 1.0,
    "cost_usd": 0.001,
}


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _error(path: Path) -> DatasetError:
    with pytest.raises(DatasetError) as caught:
        read_outcomes(path)
    return caught.value


class TestReaders:
    def test_the_sample_csv(self) -> None:
        data = read_outcomes(TINY)
        assert data.name == "tiny_qa"
        assert [t.task_id for t in data.tasks] == ["q1", "q2", "q3", "q4"]
        assert data.agents == ("cheap-bot", "smart-bot")
        assert len(data.outcomes) == 8
        q3 = data.outcome("q3", "cheap-bot")
        assert q3 is not None
        assert (q3.quality, q3.success, q3.cost_usd, q3.response) == (0.2, False, 0.0001, "Saturn")
        smart = data.outcome("q3", "smart-bot")
        assert smart is not None and smart.success is True  # 0.9 >= 0.5
        [task] = data.tasks_by_prompt("What is 17 * 23?")
        assert task.task_id == "q2" and task.category == "math"
        assert task.complexity is None
        assert data.tasks_by_prompt("What is 2 + 2?") == ()
        assert data.mean_cost_usd()["smart-bot"] == pytest.approx(0.0025)

    @pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".csv.gz", ".jsonl.gz"])
    def test_every_format_round_trips(self, tmp_path: Path, suffix: str) -> None:
        if suffix == ".parquet":
            pytest.importorskip("pyarrow")
        data = read_outcomes(TINY)
        path = tmp_path / f"copy{suffix}"
        write_outcomes(data, path)
        again = read_outcomes(path, name="tiny_qa")
        assert again == data
        assert again.outcome("q2", "smart-bot") == data.outcome("q2", "smart-bot")

    def test_success_only_and_both_columns(self, tmp_path: Path) -> None:
        path = _csv(
            tmp_path / "s.csv",
            "task_id,prompt,agent,success,cost_usd,complexity\n"
            "a,Say hi,x,1,0.5,3\n"
            "a,Say hi,y,false,0,3\n",
        )
        data = read_outcomes(path)
        x, y = data.outcome("a", "x"), data.outcome("a", "y")
        assert x is not None and (x.quality, x.success) == (1.0, True)
        assert y is not None and (y.quality, y.success) == (0.0, False)
        task = data.task("a")
        assert task is not None and task.complexity == 3
        both = _jsonl(tmp_path / "b.jsonl", [{**ROW, "quality": 0.4, "success": 1}])
        recorded = read_outcomes(both).outcome("t1", "bot-a")
        assert recorded is not None and (recorded.quality, recorded.success) == (0.4, True)

    def test_jsonl_skips_blank_lines_and_ignores_extra_columns(self, tmp_path: Path) -> None:
        path = tmp_path / "x.jsonl"
        path.write_text(json.dumps({**ROW, "judge": "gpt"}) + "\n\n")
        assert len(read_outcomes(path).outcomes) == 1

    def test_default_name(self) -> None:
        assert dataset_name(Path("/x/mmlu_outcomes.jsonl.gz")) == "mmlu_outcomes"


class TestErrors:
    def test_missing_column_names_the_file_and_the_column(self, tmp_path: Path) -> None:
        path = _csv(tmp_path / "m.csv", "task_id,prompt,agent,quality\nt,p,a,1\n")
        error = _error(path)
        assert str(error) == (
            f"{path}: line 1: column 'cost_usd': missing "
            "(the columns are: task_id, prompt, agent, quality)"
        )
        assert (error.line, error.column) == (1, "cost_usd")

    def test_neither_quality_nor_success(self, tmp_path: Path) -> None:
        path = _csv(tmp_path / "n.csv", "task_id,prompt,agent,cost_usd\nt,p,a,1\n")
        assert "column 'quality': missing: give 'quality'" in str(_error(path))

    def test_quality_outside_the_unit_interval(self, tmp_path: Path) -> None:
        path = _csv(
            tmp_path / "q.csv",
            "task_id,prompt,agent,quality,cost_usd\nt,p,a,1,0.1\nt,p,b,7,0.1\n",
        )
        assert str(_error(path)) == f"{path}: line 3: column 'quality': 7.0 is outside [0, 1]"

    def test_non_numeric_and_negative_cost(self, tmp_path: Path) -> None:
        path = _jsonl(tmp_path / "c.jsonl", [ROW, {**ROW, "agent": "b", "cost_usd": "cheap"}])
        assert str(_error(path)) == f"{path}: line 2: column 'cost_usd': 'cheap' is not a number"
        path = _jsonl(tmp_path / "n.jsonl", [{**ROW, "cost_usd": -1}])
        assert str(_error(path)) == f"{path}: line 1: column 'cost_usd': -1.0 is negative"

    def test_duplicated_task_and_agent(self, tmp_path: Path) -> None:
        path = _jsonl(tmp_path / "d.jsonl", [ROW, {**ROW, "agent": "b"}, ROW])
        assert str(_error(path)) == (
            f"{path}: line 3: column 'agent': duplicate (task 't1', agent 'bot-a'); first on line 1"
        )

    def test_a_task_with_two_prompts(self, tmp_path: Path) -> None:
        path = _jsonl(tmp_path / "p.jsonl", [ROW, {**ROW, "agent": "b", "prompt": "other"}])
        assert str(_error(path)) == (
            f"{path}: line 2: column 'prompt': differs from task 't1' on line 1"
        )

    def test_a_multiline_csv_record_is_reported_at_its_first_line(self, tmp_path: Path) -> None:
        path = _csv(
            tmp_path / "ml.csv",
            'task_id,prompt,agent,quality,cost_usd\nt,"two\nlines",a,1,0.1\nu,p,a,x,0.1\n',
        )
        assert str(_error(path)) == f"{path}: line 4: column 'quality': 'x' is not a number"

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"agent": "has space"}, "column 'agent': 'has space' is not a valid agent name"),
            ({"task_id": ""}, "column 'task_id': empty"),
            ({"success": "maybe"}, "column 'success': 'maybe' is not 0/1"),
            ({"complexity": 11}, "column 'complexity': 11 is not an integer in 1..10"),
            ({"cost_usd": None}, "column 'cost_usd': empty; the cost in USD is required"),
        ],
    )
    def test_bad_values(self, tmp_path: Path, change: dict[str, Any], message: str) -> None:
        path = _jsonl(tmp_path / "v.jsonl", [{**ROW, **change}])
        assert str(_error(path)).startswith(f"{path}: line 1: {message}")

    def test_invalid_json_and_unknown_format(self, tmp_path: Path) -> None:
        path = tmp_path / "j.jsonl"
        path.write_text(json.dumps(ROW) + "\n{not json\n")
        assert re.match(rf"{re.escape(str(path))}: line 2: invalid JSON", str(_error(path)))
        other = tmp_path / "data.xlsx"
        other.write_text("")
        assert "unknown format" in str(_error(other))
        assert "no such file" in str(_error(tmp_path / "absent.csv"))

    def test_corrupt_gzip_and_empty_file(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.csv.gz"
        path.write_bytes(gzip.compress(b"task_id,prompt")[:10])
        assert "cannot read the file" in str(_error(path))
        empty = _csv(tmp_path / "empty.csv", "")
        assert "the file is empty" in str(_error(empty))

    def test_parquet_errors_name_the_row(self, tmp_path: Path) -> None:
        pyarrow = pytest.importorskip("pyarrow")
        from pyarrow import parquet

        path = tmp_path / "p.parquet"
        rows = [ROW, {**ROW, "agent": "b", "quality": 1.5}]
        parquet.write_table(pyarrow.Table.from_pylist(rows), path)
        assert str(_error(path)) == f"{path}: row 2: column 'quality': 1.5 is outside [0, 1]"
        parquet.write_table(pyarrow.Table.from_pylist([{"task_id": "t"}]), path)
        assert "column 'prompt': missing" in str(_error(path))
        path.write_text("not parquet")
        assert "not a readable Parquet file" in str(_error(path))


class TestDataset:
    def test_subset_and_concat(self) -> None:
        data = read_outcomes(TINY)
        part = data.subset(["q2", "q1"])
        assert [t.task_id for t in part.tasks] == ["q2", "q1"]
        assert len(part.outcomes) == 4
        rest = data.subset(["q3", "q4"])
        joined = RecordedOutcomes.concat("tiny_qa", [part, rest])
        assert len(joined.outcomes) == 8 and joined.agents == data.agents
        with pytest.raises(ValueError, match="duplicate task ids"):
            RecordedOutcomes.concat("x", [part, part])
