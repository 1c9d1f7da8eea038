"""Tests of the held-out split, classifier metrics and full-information policy metrics."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from dukenet.learning.evaluation import (
    best_single_agent,
    brier_difference_interval,
    classifier_metrics,
    evaluate_full_information,
    held_out_split,
    ips_estimate,
    oracle_gain_recovered,
    oracle_result,
    random_routing_result,
    single_agent_results,
)
from dukenet.learning.router import OutcomeSample
from dukenet.learning.routerbench import FullInfoTable


def _samples(n_tasks: int, agents: tuple[str, ...] = ("a", "b")) -> list[OutcomeSample]:
    return [
        OutcomeSample(f"task-{t}", f"text {t}", 3, agent, (t + i) % 3 != 0)
        for t in range(n_tasks)
        for i, agent in enumerate(agents)
    ]


def _table() -> FullInfoTable:
    success = np.array(
        [
            [True, True, False],
            [False, True, True],
            [False, False, False],
            [True, False, True],
        ]
    )
    cost = (
        np.array(
            [
                [1.0, 5.0, 0.5],
                [1.0, 5.0, 0.5],
                [2.0, 4.0, 3.0],
                [1.0, 5.0, 0.5],
            ]
        )
        / 1000.0
    )
    responses = np.full(success.shape, "answer", dtype=object)
    return FullInfoTable(
        task_ids=("t0", "t1", "t2", "t3"),
        prompts=("p0", "p1", "p2", "p3"),
        categories=("x", "x", "y", "y"),
        agents=("cheap", "strong", "cheapest"),
        success=success,
        cost_usd=cost,
        responses=responses,
        missing=np.zeros(success.shape, dtype=bool),
    )


class TestHeldOutSplit:
    def test_deterministic_and_order_preserving(self) -> None:
        samples = _samples(200)
        train_a, test_a = held_out_split(samples, seed=0)
        train_b, test_b = held_out_split(samples, seed=0)
        assert (train_a, test_a) == (train_b, test_b)
        assert len(train_a) + len(test_a) == len(samples)
        assert train_a == [s for s in samples if s in set(train_a)]

    def test_fraction_and_rough_stratification(self) -> None:
        samples = _samples(3000)
        _, test = held_out_split(samples, test_fraction=0.2, seed=1)
        assert len(test) / len(samples) == pytest.approx(0.2, abs=0.02)
        total = Counter((s.agent, s.success) for s in samples)
        held = Counter((s.agent, s.success) for s in test)
        for stratum, n in total.items():
            assert held[stratum] / n == pytest.approx(0.2, abs=0.04)

    def test_side_of_a_task_never_changes_as_data_grows(self) -> None:
        small = _samples(300)
        grown = small + _samples(900)[600:] + [OutcomeSample("task-5", "text 5", 3, "c", True)]
        _, test_small = held_out_split(small, seed=0)
        _, test_grown = held_out_split(grown, seed=0)
        held_small = {s.task_id for s in test_small}
        held_grown = {s.task_id for s in test_grown}
        assert held_small == {t for t in held_grown if t in {s.task_id for s in small}}

    def test_all_outcomes_of_a_task_share_a_side(self) -> None:
        train, test = held_out_split(_samples(500, agents=("a", "b", "c")), seed=0)
        assert not {s.task_id for s in train} & {s.task_id for s in test}

    def test_seed_changes_split(self) -> None:
        samples = _samples(300)
        assert held_out_split(samples, seed=0)[1] != held_out_split(samples, seed=1)[1]

    @pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
    def test_bad_fraction_raises(self, fraction: float) -> None:
        with pytest.raises(ValueError):
            held_out_split(_samples(3), test_fraction=fraction)


class TestClassifierMetrics:
    def test_known_values(self) -> None:
        y = np.array([1, 1, 0, 0])
        p = np.array([0.9, 0.4, 0.6, 0.1])
        m = classifier_metrics(y, p)
        assert m["n"] == 4
        assert m["accuracy"] == pytest.approx(0.5)
        assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 1, 1, 1)
        assert m["precision"] == pytest.approx(0.5)
        assert m["recall"] == pytest.approx(0.5)
        assert m["f1"] == pytest.approx(0.5)
        assert m["roc_auc"] == pytest.approx(0.75)
        assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)
        expected_ll = -np.mean(np.log([0.9, 0.4, 0.4, 0.9]))
        assert m["log_loss"] == pytest.approx(expected_ll)

    def test_single_class_gives_nan_auc_not_an_error(self) -> None:
        m = classifier_metrics(np.ones(3), np.array([0.2, 0.7, 1.0]))
        assert math.isnan(m["roc_auc"])
        assert math.isfinite(m["log_loss"])
        assert m["recall"] == pytest.approx(2 / 3)

    def test_empty(self) -> None:
        m = classifier_metrics(np.array([]), np.array([]))
        assert m["n"] == 0 and math.isnan(m["brier"])

    def test_shape_mismatch_raises(self) -> None:
        with pytest.raises(ValueError):
            classifier_metrics(np.ones(3), np.ones(2))


class TestBootstrapAndIps:
    def test_better_challenger_has_negative_interval(self) -> None:
        rng = np.random.default_rng(0)
        y = rng.random(2000) < 0.7
        good = np.clip(np.where(y, 0.7, 0.3) + rng.normal(0.0, 0.2, 2000), 0.0, 1.0)
        bad = np.full(2000, 0.5)
        diff, low, high = brier_difference_interval(y, bad, good, n_boot=300)
        assert diff < 0 and low < diff < high < 0

    def test_ips_recovers_target_value(self) -> None:
        rng = np.random.default_rng(1)
        n, k = 20_000, 4
        success_rate = np.array([0.2, 0.4, 0.6, 0.9])
        logged = rng.integers(0, k, size=n)  # uniform logging policy
        rewards = (rng.random(n) < success_rate[logged]).astype(float)
        target = (logged == 3).astype(float)  # always choose agent 3
        propensity = np.full(n, 1 / k)
        assert ips_estimate(rewards, propensity, target) == pytest.approx(0.9, abs=0.02)
        plain = ips_estimate(rewards, propensity, target, self_normalized=False)
        assert plain == pytest.approx(0.9, abs=0.05)

    def test_ips_rejects_zero_propensity(self) -> None:
        with pytest.raises(ValueError):
            ips_estimate(np.ones(2), np.array([0.5, 0.0]), np.ones(2))


class TestPolicyMetrics:
    def test_evaluate_choices(self) -> None:
        result = evaluate_full_information(["strong", "strong", "cheap", "cheapest"], _table())
        assert result.n == 4
        assert result.success_rate == pytest.approx(0.75)
        assert result.cost_per_1k_usd == pytest.approx((5 + 5 + 2 + 0.5) / 4)
        assert result.choices == {"cheap": 1, "cheapest": 1, "strong": 2}

    def test_single_agents_and_best(self) -> None:
        results = single_agent_results(_table())
        assert results["cheap"].success_rate == pytest.approx(0.5)
        assert results["cheapest"].cost_per_1k_usd == pytest.approx(4.5 / 4)
        best, result = best_single_agent(_table())
        # cheap, strong and cheapest all succeed on 2 of 4: the cheapest of them wins the tie.
        assert best == "cheapest" and result.success_rate == pytest.approx(0.5)

    def test_oracle_takes_cheapest_correct_else_cheapest(self) -> None:
        oracle = oracle_result(_table())
        assert oracle.success_rate == pytest.approx(0.75)
        assert oracle.choices == {"cheap": 2, "cheapest": 2}
        assert oracle.cost_per_1k_usd == pytest.approx((1.0 + 0.5 + 2.0 + 0.5) / 4)

    def test_random_is_seeded(self) -> None:
        a = random_routing_result(_table(), seed=3)
        assert a == random_routing_result(_table(), seed=3)
        assert sum(a.choices.values()) == 4

    def test_bad_choices_raise(self) -> None:
        with pytest.raises(ValueError):
            evaluate_full_information(["cheap"], _table())
        with pytest.raises(ValueError):
            evaluate_full_information(["nobody"] * 4, _table())

    def test_oracle_gain_recovered(self) -> None:
        best = evaluate_full_information(["strong"] * 4, _table())
        oracle = oracle_result(_table())
        assert oracle_gain_recovered(oracle, best, oracle) == pytest.approx(1.0)
        assert oracle_gain_recovered(best, best, oracle) == pytest.approx(0.0)
        assert math.isnan(oracle_gain_recovered(best, oracle, oracle))
