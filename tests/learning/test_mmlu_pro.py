"""The MMLU-Pro subset shipped in the package and its loader: sizes, the seeded subject-stratified
split, the long-format view, other layouts and errors that name the file, line and column."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dukenet.learning.mmlu_pro import (
    DATASET_NAME,
    load_mmlu_pro,
    mmlu_pro_outcomes,
    split_rows,
    stratified_order,
)
from dukenet.learning.routerbench import FullInfoTable
from dukenet.replay.dataset import DatasetError

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_qa.csv"
QUESTIONS, MODELS, SUBJECTS = 7000, 31, 14


@pytest.fixture(scope="module")
def table() -> FullInfoTable:
    return load_mmlu_pro()


def _folder(tmp_path: Path, questions: str, outcomes: str) -> Path:
    (tmp_path / "questions.csv.gz").write_bytes(gzip.compress(questions.encode()))
    (tmp_path / "outcomes.csv").write_text(outcomes)
    return tmp_path


QUESTIONS_CSV = 'task_id,category,prompt\nq1,s/a,"What is 1 + 1?\nA. 2\nB. 3"\nq2,s/b,Pick one\n'


class TestShippedSubset:
    def test_every_question_has_every_model(self, table: FullInfoTable) -> None:
        assert (table.n_prompts, table.n_agents) == (QUESTIONS, MODELS)
        assert not table.missing.any() and table.n_missing_cost == 0
        assert len(set(table.task_ids)) == QUESTIONS
        assert all(t.startswith("mmlu-pro-") for t in table.task_ids)
        assert len(set(table.categories)) == SUBJECTS
        assert {"gpt-4o", "gemini-1.5-flash-002", "Llama-2-7b-hf"} <= set(table.agents)
        assert np.isfinite(table.cost_usd).all() and (table.cost_usd >= 0).all()
        assert all(r == "" for r in table.responses.ravel()[:100])

    def test_the_cached_table_cannot_be_changed_in_place(self, table: FullInfoTable) -> None:
        with pytest.raises(ValueError):
            table.success[0, 0] = not table.success[0, 0]
        assert load_mmlu_pro("test").success.flags.writeable

    def test_split_is_80_20_by_question_within_each_subject(self, table: FullInfoTable) -> None:
        train, test = load_mmlu_pro("train"), load_mmlu_pro("test")
        assert not set(train.task_ids) & set(test.task_ids)
        assert set(train.task_ids) | set(test.task_ids) == set(table.task_ids)
        everywhere, held_out = Counter(table.categories), Counter(test.categories)
        for subject, n in everywhere.items():
            assert abs(held_out[subject] - 0.2 * n) <= 0.5
        # rows keep the file's order, and a row's outcomes travel with it
        row = table.task_ids.index(test.task_ids[0])
        assert (test.success[0] == table.success[row]).all()
        assert list(test.task_ids) == [t for t in table.task_ids if t in set(test.task_ids)]

    def test_split_is_seeded(self) -> None:
        a, b = load_mmlu_pro("test", seed=0), load_mmlu_pro("test", seed=0)
        other = load_mmlu_pro("test", seed=1)
        assert a.task_ids == b.task_ids
        assert a.task_ids != other.task_ids and len(a.task_ids) == len(other.task_ids)

    def test_unknown_split(self) -> None:
        with pytest.raises(ValueError, match="split"):
            load_mmlu_pro("validation")  # type: ignore[arg-type]

    def test_long_format_view_with_a_stratified_limit(self) -> None:
        data = mmlu_pro_outcomes("train", limit=SUBJECTS * 10)
        assert data.name == DATASET_NAME and len(data.tasks) == SUBJECTS * 10
        assert len(data.outcomes) == SUBJECTS * 10 * MODELS
        train = load_mmlu_pro("train")
        shares = Counter(train.categories)
        drawn = Counter(t.category for t in data.tasks)
        assert set(drawn) == set(shares)
        for subject, n in shares.items():
            assert abs(drawn[subject] - len(data.tasks) * n / train.n_prompts) <= 1
        assert all(t.complexity is not None and 1 <= t.complexity <= 10 for t in data.tasks)
        assert {t.task_id for t in data.tasks} <= set(train.task_ids)
        with pytest.raises(ValueError, match="limit"):
            mmlu_pro_outcomes(limit=0)

    def test_questions_sharing_a_prompt_keep_their_own_ids(self, table: FullInfoTable) -> None:
        shared = [p for p, n in Counter(table.prompts).items() if n > 1]
        assert shared  # MMLU-Pro repeats some questions
        rows = [i for i, p in enumerate(table.prompts) if p == shared[0]]
        assert len({table.task_ids[i] for i in rows}) == len(rows)


class TestOrderAndSplit:
    def test_every_prefix_of_the_order_is_stratified(self) -> None:
        categories = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
        order = stratified_order(categories, seed=4)
        assert sorted(order.tolist()) == list(range(100))
        first = Counter(categories[i] for i in order[:10])
        assert first == {"a": 6, "b": 3, "c": 1}
        assert (stratified_order(categories, seed=4) == order).all()

    def test_split_rows(self) -> None:
        categories = ["a"] * 10 + ["b"] * 5
        train, test = split_rows(categories, seed=2)
        assert Counter(categories[i] for i in test) == {"a": 2, "b": 1}
        assert sorted([*train.tolist(), *test.tolist()]) == list(range(15))


class TestOtherLayouts:
    def test_a_folder_in_the_shipped_layout(self, tmp_path: Path) -> None:
        folder = _folder(
            tmp_path,
            QUESTIONS_CSV,
            "task_id,agent,quality,cost_usd\nq1,m1,1.0,0.001\nq1,m2,0.0,0.003\nq2,m1,0.0,0.002\n",
        )
        table = load_mmlu_pro(path=folder)
        assert table.task_ids == ("q1", "q2") and table.agents == ("m1", "m2")
        assert table.prompts[0] == "What is 1 + 1?\nA. 2\nB. 3"
        assert table.success.tolist() == [[True, False], [False, False]]
        assert table.missing.tolist() == [[False, False], [False, True]]
        assert table.cost_usd[1, 1] == pytest.approx(0.003)  # m2's mean recorded cost

    def test_a_long_format_file(self) -> None:
        table = load_mmlu_pro(path=TINY)
        assert table.agents == ("cheap-bot", "smart-bot") and table.n_prompts == 4

    @pytest.mark.parametrize(
        ("outcomes", "message"),
        [
            ("task_id,agent,quality,cost_usd\nq1,m1,1.0,0.001\nq9,m1,1.0,0.001\n", r"line 3.*q9"),
            ("task_id,agent,quality,cost_usd\nq1,m1,1.5,0.001\n", r"line 2: column 'quality'"),
            ("task_id,agent,quality,cost_usd\nq1,m1,1,-2\n", r"line 2: column 'cost_usd'"),
            ("task_id,agent,quality,cost_usd\nq1,m1,x,0.1\n", r"line 2: column 'quality': 'x'"),
            ("task_id,agent,cost_usd\nq1,m1,0.1\n", r"line 1: column 'quality': missing"),
            ("task_id,agent,quality,cost_usd\nq1,m1,1,0.1\nq1,m1,0,0.1\n", r"duplicate"),
            ("task_id,agent,quality,cost_usd\nq1,m1,1\n", r"line 2: 3 fields"),
            ("task_id,agent,quality,cost_usd\n", r"no rows"),
        ],
    )
    def test_errors_name_the_file_line_and_column(
        self, tmp_path: Path, outcomes: str, message: str
    ) -> None:
        folder = _folder(tmp_path, QUESTIONS_CSV, outcomes)
        with pytest.raises(DatasetError, match=message) as error:
            load_mmlu_pro(path=folder)
        assert "outcomes.csv" in str(error.value)

    def test_a_missing_folder(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetError, match="cannot read"):
            load_mmlu_pro(path=tmp_path / "nowhere")
