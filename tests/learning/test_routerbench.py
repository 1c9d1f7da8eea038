"""Tests of the RouterBench loader, complexity_of, and Duke on real recorded outcomes."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from dukenet.learning.evaluation import (
    best_single_agent,
    classifier_metrics,
    oracle_result,
    random_routing_result,
)
from dukenet.learning.router import DukeRouter, RouterConfig
from dukenet.learning.routerbench import (
    FullInfoTable,
    complexity_of,
    full_information_samples,
    load_routerbench,
    routerbench_outcomes,
    table_from_outcomes,
)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "routerbench_routerdc"
MODELS = 11


@pytest.fixture(scope="module")
def train() -> FullInfoTable:
    return load_routerbench("train")


@pytest.fixture(scope="module")
def test_table() -> FullInfoTable:
    return load_routerbench("test")


class TestLoader:
    def test_sizes_and_categories(self, train: FullInfoTable, test_table: FullInfoTable) -> None:
        assert (train.n_prompts, train.n_agents) == (2225, MODELS)
        assert (test_table.n_prompts, test_table.n_agents) == (953, MODELS)
        assert Counter(train.categories) == {"arc-challenge": 1039, "mbpp": 299, "winogrande": 887}
        assert Counter(test_table.categories) == {
            "arc-challenge": 445,
            "mbpp": 128,
            "winogrande": 380,
        }
        assert train.agents == test_table.agents
        assert "gpt-4-1106-preview" in train.agents and "zero-one-ai/Yi-34B-Chat" in train.agents

    def test_matrices(self, train: FullInfoTable) -> None:
        assert train.success.dtype == bool and train.missing.dtype == bool
        assert train.success.shape == train.cost_usd.shape == train.responses.shape
        assert np.isfinite(train.cost_usd).all() and (train.cost_usd > 0).all()
        assert all(isinstance(r, str) for r in train.responses.ravel())
        assert not train.success[train.missing].any()
        assert 0.6 < train.success.mean() < 0.8

    def test_blank_cells_are_counted(self, train: FullInfoTable, test_table: FullInfoTable) -> None:
        assert int(train.missing.sum()) == 92
        assert int(test_table.missing.sum()) == 62
        assert train.n_missing_cost == test_table.n_missing_cost == 0

    def test_task_ids_unique_across_both_splits(
        self, train: FullInfoTable, test_table: FullInfoTable
    ) -> None:
        ids = train.task_ids + test_table.task_ids
        assert len(set(ids)) == len(ids)
        assert "mbpp.dev.1" in test_table.task_ids

    def test_known_row(self, test_table: FullInfoTable) -> None:
        i = test_table.task_ids.index("mbpp.dev.1")
        gpt4 = test_table.agents.index("gpt-4-1106-preview")
        gpt35 = test_table.agents.index("gpt-3.5-turbo-1106")
        assert test_table.prompts[i] == "Write a python function to identify non-prime numbers."
        assert not test_table.success[i, gpt4] and test_table.success[i, gpt35]
        assert test_table.cost_usd[i, gpt4] == pytest.approx(0.01091)
        assert "def " in test_table.responses[i, gpt35]
        assert not test_table.responses[i, gpt35].startswith("[")

    def test_reads_plain_csv_folder_like_the_packaged_files(
        self, test_table: FullInfoTable, tmp_path: Path
    ) -> None:
        if not SHARED_DATA.is_dir():
            pytest.skip("shared data folder not present")
        for path in SHARED_DATA.glob("*_test.csv"):
            shutil.copy(path, tmp_path / path.name)
        plain = load_routerbench("test", data_dir=tmp_path)
        assert plain.task_ids == test_table.task_ids
        np.testing.assert_array_equal(plain.success, test_table.success)
        np.testing.assert_array_equal(plain.cost_usd, test_table.cost_usd)

    def test_bad_split_and_missing_folder(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError):
            load_routerbench("dev")  # type: ignore[arg-type]
        with pytest.raises(FileNotFoundError):
            load_routerbench("test", data_dir=tmp_path)

    def test_subset(self, test_table: FullInfoTable) -> None:
        sub = test_table.subset([5, 1])
        assert sub.task_ids == (test_table.task_ids[5], test_table.task_ids[1])
        np.testing.assert_array_equal(sub.success, test_table.success[[5, 1]])


class TestComplexity:
    def test_range_and_ordering_by_kind(self, train: FullInfoTable) -> None:
        by_category: dict[str, list[int]] = {}
        for text, category in zip(train.prompts, train.categories, strict=True):
            by_category.setdefault(category, []).append(complexity_of(text))
        medians = {c: float(np.median(v)) for c, v in by_category.items()}
        assert all(1 <= c <= 10 for v in by_category.values() for c in v)
        assert medians["mbpp"] > medians["arc-challenge"] > medians["winogrande"]

    def test_examples(self) -> None:
        assert complexity_of("") == 1
        assert complexity_of("hi") == 1
        short_code = complexity_of("Write a python function to reverse a string.")
        assert short_code >= 5
        long_text = complexity_of(" ".join(["word"] * 5000) + " write a function in code")
        assert long_text == 10
        few_shot = "Q: 1+1?\nA) 2\nB) 3\nAnswer: A\n\nQ: 2+2?\nA) 4\nB) 5\nAnswer:"
        assert complexity_of(few_shot) == complexity_of("Q: 2+2?\nA) 4\nB) 5\nAnswer:")


class TestDukeOnRouterBench:
    def test_references(self, test_table: FullInfoTable) -> None:
        best, result = best_single_agent(test_table)
        assert best == "gpt-4-1106-preview"
        assert result.success_rate == pytest.approx(0.874, abs=0.001)
        assert oracle_result(test_table).success_rate > 0.95
        assert random_routing_result(test_table).success_rate < 0.72

    def test_router_learns_real_outcomes(
        self, train: FullInfoTable, test_table: FullInfoTable
    ) -> None:
        rng = np.random.default_rng(0)
        rows = rng.choice(train.n_prompts, size=300, replace=False)
        samples = full_information_samples(train, rows)
        assert len(samples) == 300 * MODELS
        router = DukeRouter.fit(samples, RouterConfig())
        held_out = test_table.subset(rng.choice(test_table.n_prompts, size=200, replace=False))
        p = router.predict_proba(held_out.tasks(), held_out.agents)
        metrics = classifier_metrics(held_out.success.ravel(), p.ravel())
        per_agent = np.broadcast_to(train.success[rows].mean(axis=0), p.shape)
        baseline = classifier_metrics(held_out.success.ravel(), per_agent.ravel())
        assert metrics["brier"] < baseline["brier"] - 0.005
        assert metrics["roc_auc"] > 0.65


class TestLongFormatAdapter:
    """RouterBench's wide CSV is one adapter to the long recorded-outcomes format."""

    @pytest.mark.parametrize("split", ["train", "test"])
    def test_wide_to_long_gives_the_loaders_table(self, split: Literal["train", "test"]) -> None:
        wide = load_routerbench(split)
        long = routerbench_outcomes(split)
        assert long.name == "routerbench"
        assert len(long.outcomes) == wide.n_prompts * wide.n_agents - int(wide.missing.sum())
        table = table_from_outcomes(long)
        assert table.task_ids == wide.task_ids
        assert table.prompts == wide.prompts
        assert table.categories == wide.categories
        assert table.agents == wide.agents
        np.testing.assert_array_equal(table.success, wide.success)
        np.testing.assert_array_equal(table.missing, wide.missing)
        recorded = ~wide.missing
        np.testing.assert_array_equal(table.cost_usd[recorded], wide.cost_usd[recorded])
        np.testing.assert_array_equal(table.responses[recorded], wide.responses[recorded])
        assert [t.complexity for t in long.tasks] == wide.complexities().tolist()

    def test_a_blank_cell_is_left_out_not_invented(self, train: FullInfoTable) -> None:
        long = routerbench_outcomes("train")
        i, j = (int(x[0]) for x in np.nonzero(train.missing))
        assert long.outcome(train.task_ids[i], train.agents[j]) is None
        assert long.outcome(train.task_ids[0], train.agents[0]) is not None

    def test_all_joins_the_splits(self) -> None:
        both = routerbench_outcomes("all")
        assert len(both.tasks) == 2225 + 953
        assert both.task("mbpp.dev.1") is not None
