"""Tests of the held-out split, classifier metrics and full-information policy metrics."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from dukenet.learning.evaluation import (
    LoggedDecision,
    PolicyTerms,
    best_single_agent,
    bootstrap_policy_difference,
    brier_difference_interval,
    calibration_curve,
    classifier_metrics,
    dr_estimate,
    evaluate_full_information,
    greedy_policy_evaluation,
    held_out_split,
    ips_estimate,
    normalized_utility,
    oracle_gain_recovered,
    oracle_result,
    policy_promotion_decision,
    random_routing_result,
    score_to_quality,
    single_agent_results,
    snips_estimate,
    split_hash,
    success_labels,
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


class TestQualityLabels:
    @pytest.mark.parametrize(
        ("score", "low", "high", "expected"),
        [(1, 1, 10, 0.0), (10, 1, 10, 1.0), (7, 1, 10, 2 / 3), (4, 1, 5, 0.75), (1, 0, 1, 1.0)],
    )
    def test_score_maps_linearly(
        self, score: float, low: float, high: float, expected: float
    ) -> None:
        assert score_to_quality(score, scale_min=low, scale_max=high) == pytest.approx(expected)

    @pytest.mark.parametrize(
        ("score", "low", "high"), [(0, 1, 10), (11, 1, 10), (3, 5, 5), (math.nan, 1, 10)]
    )
    def test_score_outside_scale_raises(self, score: float, low: float, high: float) -> None:
        with pytest.raises(ValueError):
            score_to_quality(score, scale_min=low, scale_max=high)

    def test_labels_use_the_threshold(self) -> None:
        quality = np.array([0.0, 0.49, 0.5, 0.7, 1.0])
        assert success_labels(quality).tolist() == [False, False, True, True, True]
        assert success_labels(quality, 0.7).tolist() == [False, False, False, True, True]
        # Binary outcomes keep their label for any threshold.
        assert success_labels(np.array([0.0, 1.0]), 1.0).tolist() == [False, True]
        with pytest.raises(ValueError):
            success_labels(quality, 0.0)


class TestStratifiedSplit:
    @staticmethod
    def _unbalanced(n: int) -> list[OutcomeSample]:
        # One outcome per task, 10% failures: the rare class a per-row coin would misallocate.
        return [OutcomeSample(f"t{i}", f"text {i}", 3, "a", i % 10 != 3) for i in range(n)]

    def test_each_label_is_held_out_at_the_fraction(self) -> None:
        samples = self._unbalanced(1000)
        for seed in range(5):
            _, test = held_out_split(samples, test_fraction=0.2, seed=seed)
            failures = sum(not s.success for s in test)
            successes = sum(s.success for s in test)
            # 100 failures and 900 successes: exactly 20 and 180 (blocks of 5, one held out each).
            assert (failures, successes) == (20, 180)

    def test_inexact_fraction_is_within_one_block(self) -> None:
        samples = self._unbalanced(997)
        _, test = held_out_split(samples, test_fraction=0.3, seed=2)
        n_fail = sum(not s.success for s in samples)
        assert abs(sum(not s.success for s in test) - 0.3 * n_fail) <= 3

    def test_appending_never_moves_a_row(self) -> None:
        samples = self._unbalanced(2000)
        for cut in (37, 500, 1333):
            _, small = held_out_split(samples[:cut], seed=4)
            _, grown = held_out_split(samples, seed=4)
            early = {s.task_id for s in samples[:cut]}
            assert {s.task_id for s in small} == {s.task_id for s in grown if s.task_id in early}

    def test_blocks_are_not_periodic(self) -> None:
        _, test = held_out_split(self._unbalanced(1000), seed=0)
        positions = {int(s.task_id[1:]) % 5 for s in test if s.success}
        assert len(positions) > 1  # the held-out slot moves from block to block

    def test_unstratified_rule_is_the_per_row_hash(self) -> None:
        samples = self._unbalanced(300)
        _, test = held_out_split(samples, seed=3, stratify=False)
        assert {s.task_id for s in test} == {
            s.task_id for s in samples if split_hash(s.task_id, 3) < 0.2
        }


class TestCalibration:
    def test_hand_built_bins(self) -> None:
        y = np.array([0, 1, 1, 0, 1])
        p = np.array([0.05, 0.5, 0.85, 0.95, 0.95])
        cal = calibration_curve(y, p, n_bins=2)
        assert [(b.low, b.high, b.count) for b in cal.bins] == [(0.0, 0.5, 2), (0.5, 1.0, 3)]
        assert cal.bins[0].mean_predicted == pytest.approx(0.275)
        assert cal.bins[0].observed_rate == pytest.approx(0.5)
        assert cal.bins[1].mean_predicted == pytest.approx(2.75 / 3)
        assert cal.bins[1].observed_rate == pytest.approx(2 / 3)
        assert cal.ece == pytest.approx((2 * 0.225 + 3 * 0.25) / 5)

    def test_empty_bins_are_left_out_and_json_has_counts(self) -> None:
        cal = calibration_curve(np.array([1, 0]), np.array([0.91, 0.92]), n_bins=10)
        assert cal.as_json() == [
            {
                "low": pytest.approx(0.9),
                "high": 1.0,
                "mean_predicted": pytest.approx(0.915),
                "observed_rate": 0.5,
                "count": 2,
            }
        ]

    def test_calibrated_predictions_have_small_ece_and_biased_ones_large(self) -> None:
        rng = np.random.default_rng(0)
        p = rng.random(20_000)
        y = rng.random(20_000) < p
        assert calibration_curve(y, p).ece < 0.02
        assert calibration_curve(y, np.clip(p + 0.2, 0, 1)).ece > 0.15

    def test_empty_and_bad_input(self) -> None:
        assert math.isnan(calibration_curve(np.array([]), np.array([])).ece)
        with pytest.raises(ValueError):
            calibration_curve(np.ones(2), np.array([0.5, 1.5]))


def _bandit_log(
    n: int, seed: int, success_rate: np.ndarray, prices: np.ndarray, value_sat: float
) -> tuple[list[LoggedDecision], np.ndarray]:
    """Uniform logging over K agents; returns the decisions and the full (n, K) outcomes."""
    rng = np.random.default_rng(seed)
    k = success_rate.size
    outcomes = rng.random((n, k)) < success_rate
    logged = rng.integers(0, k, size=n)
    decisions = [
        LoggedDecision(
            description=f"task {i}",
            complexity=3,
            candidates=tuple(f"agent-{j}" for j in range(k)),
            prices_sat=tuple(float(x) for x in prices),
            chosen=int(logged[i]),
            propensity=1.0 / k,
            success=bool(outcomes[i, logged[i]]),
            value_sat=value_sat,
        )
        for i in range(n)
    ]
    return decisions, outcomes


class TestOffPolicyEstimators:
    def test_dr_is_exact_when_the_reward_model_is(self) -> None:
        # Deterministic outcomes, and the reward model knows them: DR equals the target's true
        # value on every sample, whatever the propensities; IPS does not.
        rng = np.random.default_rng(5)
        n, k = 40, 3
        truth = rng.random((n, k)) < 0.5
        prices = (100.0, 300.0, 50.0)
        value = 1_000.0
        logged = rng.integers(0, k, size=n)
        propensity = rng.uniform(0.1, 1.0, size=n)
        decisions = [
            LoggedDecision(
                f"t{i}",
                2,
                ("a", "b", "c"),
                prices,
                int(logged[i]),
                float(propensity[i]),
                bool(truth[i, logged[i]]),
                value,
            )
            for i in range(n)
        ]
        evaluation = greedy_policy_evaluation(decisions, list(truth.astype(float)))
        chosen = evaluation.target_index
        true_value = np.mean(truth[np.arange(n), chosen] - np.array(prices)[chosen] / value)
        assert evaluation.utility.dr() == pytest.approx(true_value, abs=1e-12)
        assert evaluation.success.dr() == pytest.approx(truth[np.arange(n), chosen].mean())
        assert evaluation.utility.ips() != pytest.approx(true_value, abs=1e-3)
        # The greedy target maximises p - price / V: the cheapest agent that succeeds.
        for i in range(n):
            utilities = truth[i] - np.array(prices) / value
            assert utilities[chosen[i]] == utilities.max()

    def test_dr_is_unbiased_with_a_wrong_reward_model(self) -> None:
        rates = np.array([0.2, 0.5, 0.9])
        decisions, _ = _bandit_log(30_000, 1, rates, np.zeros(3), math.inf)
        # The model thinks agent 0 is best, so the target always picks agent 0 (true rate 0.2).
        wrong = [np.array([0.8, 0.5, 0.1])] * len(decisions)
        evaluation = greedy_policy_evaluation(decisions, wrong)
        assert set(evaluation.target_index.tolist()) == {0}
        assert evaluation.success.dr() == pytest.approx(0.2, abs=0.02)
        assert evaluation.success.snips() == pytest.approx(0.2, abs=0.02)

    def test_snips_on_a_uniform_logger(self) -> None:
        rates = np.array([0.2, 0.4, 0.6, 0.9])
        decisions, _ = _bandit_log(20_000, 2, rates, np.zeros(4), math.inf)
        rewards = np.array([d.success for d in decisions], dtype=float)
        logged = np.array([d.chosen for d in decisions])
        propensity = np.full(len(decisions), 0.25)
        target = (logged == 3).astype(float)
        # With a uniform logger SNIPS is exactly the mean reward of the rows that match.
        expected = rewards[logged == 3].mean()
        assert snips_estimate(rewards, propensity, target) == pytest.approx(expected, abs=1e-12)
        assert expected == pytest.approx(0.9, abs=0.02)

    def test_dr_estimate_function_matches_terms(self) -> None:
        r, mu, pi = np.array([1.0, 0.0]), np.array([0.5, 0.25]), np.array([1.0, 0.0])
        hat_logged, hat_target = np.array([0.6, 0.3]), np.array([0.6, 0.7])
        # (0.6 + 2 * (1 - 0.6) + 0.7 + 0) / 2
        assert dr_estimate(r, mu, pi, hat_logged, hat_target) == pytest.approx(1.05)
        with pytest.raises(ValueError):
            dr_estimate(r, np.array([0.5, 0.0]), pi, hat_logged, hat_target)

    def test_weight_clip_caps_the_correction_and_the_variance(self) -> None:
        r, mu, pi = np.array([1.0, 0.0, 1.0]), np.array([0.01, 0.5, 0.2]), np.array([1.0, 0.0, 1.0])
        hat_logged, hat_target = np.array([0.5, 0.3, 0.5]), np.array([0.5, 0.7, 0.5])
        plain = PolicyTerms(r, mu, pi, hat_logged, hat_target)
        clipped = PolicyTerms(r, mu, pi, hat_logged, hat_target, weight_clip=10.0)
        # Row 0's weight 100 is capped at 10; row 2's weight 5 is below the cap.
        assert plain.dr_terms().tolist() == pytest.approx([0.5 + 100 * 0.5, 0.7, 0.5 + 5 * 0.5])
        assert clipped.dr_terms().tolist() == pytest.approx([0.5 + 10 * 0.5, 0.7, 0.5 + 5 * 0.5])
        assert clipped.ips() == plain.ips()  # only the doubly robust terms are capped
        with pytest.raises(ValueError):
            PolicyTerms(r, mu, pi, hat_logged, hat_target, weight_clip=0.5)

    def test_clipped_dr_has_far_less_spread_on_a_skewed_logger(self) -> None:
        # A logger that almost never makes the target's choice (propensity 0.01): the unclipped
        # DR estimate swings with the handful of matching rows; the clipped one does not.
        rng = np.random.default_rng(11)
        estimates: dict[float | None, list[float]] = {None: [], 5.0: []}
        for _ in range(200):
            chosen = rng.random(300) < 0.01  # rows where the logger made the target's choice
            mu = np.where(chosen, 0.01, 0.99)
            r = (rng.random(300) < 0.7).astype(float)
            hat = np.full(300, 0.6)
            for clip in estimates:
                terms = PolicyTerms(r, mu, chosen.astype(float), hat, hat, weight_clip=clip)
                estimates[clip].append(terms.dr())
        assert np.std(estimates[5.0]) < np.std(estimates[None]) / 5
        # The clipped estimate is pulled toward the reward model (0.6) from the truth (0.7).
        assert 0.6 <= np.mean(estimates[5.0]) < 0.7

    def test_price_enters_the_reward_relative_to_value(self) -> None:
        decision = LoggedDecision("t", 1, ("a", "b"), (100.0, 900.0), 1, 0.5, True, 1_000.0)
        evaluation = greedy_policy_evaluation([decision], [np.array([0.9, 0.95])])
        # 0.9 - 0.1 beats 0.95 - 0.9: the target picks the cheap agent at 100 sat.
        assert evaluation.target_index.tolist() == [0]
        assert evaluation.target_price_sat.tolist() == [100.0]
        assert evaluation.utility.rewards.tolist() == pytest.approx([1.0 - 0.9])
        assert normalized_utility(1.0, 500.0, math.inf) == pytest.approx(1.0)

    def test_common_reward_model_cancels_where_the_policies_agree(self) -> None:
        rates = np.array([0.2, 0.5, 0.9])
        decisions, _ = _bandit_log(400, 3, rates, np.zeros(3), math.inf)
        # Both routers pick agent 2 everywhere but predict different success rates.
        sharp = [np.array([0.1, 0.4, 0.95])] * len(decisions)
        blunt = [np.array([0.3, 0.5, 0.6])] * len(decisions)
        own_a = greedy_policy_evaluation(decisions, sharp).utility
        own_b = greedy_policy_evaluation(decisions, blunt).utility
        assert abs(own_a.dr() - own_b.dr()) > 1e-3  # each its own reward model: noise differs
        common = [np.array([0.2, 0.45, 0.8])] * len(decisions)
        a = greedy_policy_evaluation(decisions, sharp, p_reward=common)
        b = greedy_policy_evaluation(decisions, blunt, p_reward=common)
        assert a.target_index.tolist() == b.target_index.tolist() == [2] * len(decisions)
        assert np.array_equal(a.utility.dr_terms(), b.utility.dr_terms())
        assert a.success.reward_hat_target.tolist() == [0.8] * len(decisions)
        with pytest.raises(ValueError):
            greedy_policy_evaluation(decisions, sharp, p_reward=common[:-1])
        with pytest.raises(ValueError):
            greedy_policy_evaluation(
                decisions, sharp, p_reward=[np.array([0.5, 0.5])] * len(decisions)
            )

    def test_logged_decision_validates(self) -> None:
        with pytest.raises(ValueError):
            LoggedDecision("t", 1, ("a",), (1.0,), 0, 0.0, True, 1.0)
        with pytest.raises(ValueError):
            LoggedDecision("t", 1, ("a",), (1.0, 2.0), 0, 0.5, True, 1.0)


def _terms(rewards: np.ndarray, match: np.ndarray, hat: float) -> PolicyTerms:
    n = rewards.size
    return PolicyTerms(
        rewards=rewards,
        propensities=np.full(n, 0.5),
        target_probabilities=match,
        reward_hat_logged=np.full(n, hat),
        reward_hat_target=np.full(n, hat),
    )


class TestPromotionGate:
    @staticmethod
    def _log(n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(0)
        logged_good = rng.random(n) < 0.5  # which of two agents was logged
        success = np.where(logged_good, rng.random(n) < 0.9, rng.random(n) < 0.3)
        return logged_good, success.astype(float)

    def test_identical_challenger_is_rejected(self) -> None:
        logged_good, rewards = self._log()
        champion = _terms(rewards, logged_good.astype(float), 0.6)
        decision = policy_promotion_decision(champion, champion, n_boot=1000, seed=0)
        assert not decision.promote and decision.rule == "policy-bootstrap"
        assert (decision.difference, decision.low, decision.high) == (0.0, 0.0, 0.0)

    def test_clearly_better_challenger_is_promoted_and_worse_one_not(self) -> None:
        logged_good, rewards = self._log()
        good = _terms(rewards, logged_good.astype(float), 0.6)
        bad = _terms(rewards, (~logged_good).astype(float), 0.6)
        up = policy_promotion_decision(good, bad, n_boot=1000, seed=0)
        assert up.promote and up.low is not None and up.low > 0
        assert up.difference == pytest.approx(0.6, abs=0.05)
        assert up.n_rows == 2000 and up.n_boot == 1000
        down = policy_promotion_decision(bad, good, n_boot=1000, seed=0)
        assert not down.promote and down.high is not None and down.high < 0
        snips = policy_promotion_decision(good, bad, estimator="snips", n_boot=300, seed=0)
        assert snips.promote and snips.challenger_value == pytest.approx(0.9, abs=0.03)

    def test_small_noisy_difference_is_not_promoted(self) -> None:
        logged_good, rewards = self._log(40)
        a = _terms(rewards, logged_good.astype(float), 0.6)
        flip = logged_good.copy()
        flip[0] = ~flip[0]
        b = _terms(rewards, flip.astype(float), 0.6)
        decision = policy_promotion_decision(a, b, n_boot=1000, seed=1)
        assert not decision.promote and decision.low is not None and decision.low <= 0
        assert decision == policy_promotion_decision(a, b, n_boot=1000, seed=1)  # seeded

    def test_one_sided_test_promotes_between_the_one_and_two_sided_bounds(self) -> None:
        # Rewards +1 / -1 at propensity 0.5: DR difference +2 / -2 per row, mean 0.18 over 400
        # rows, standard error 0.1, so the one-sided 95% bound (mean - 1.645 se = +0.016) is above
        # 0 and the two-sided 95% interval's lower end (mean - 1.96 se = -0.016) is not.
        delta = np.array([1.0] * 218 + [-1.0] * 182)
        challenger = _terms(delta, np.ones(400), 0.0)
        champion = _terms(delta, np.zeros(400), 0.0)
        one = policy_promotion_decision(challenger, champion, n_boot=4000, seed=0, one_sided=True)
        two = policy_promotion_decision(challenger, champion, n_boot=4000, seed=0)
        assert one.difference == two.difference == pytest.approx(2 * 0.09)
        assert one.promote and one.low is not None and one.low > 0
        assert not two.promote and two.low is not None and two.low <= 0
        assert "one-sided 95% lower bound > 0" in one.reason
        with pytest.raises(ValueError):
            policy_promotion_decision(challenger, champion, level=0.5, one_sided=True)

    def test_no_rows_keeps_the_champion(self) -> None:
        empty = _terms(np.zeros(0), np.zeros(0), 0.5)
        decision = policy_promotion_decision(empty, empty)
        assert not decision.promote and decision.n_rows == 0 and decision.low is None

    def test_first_model_rule(self) -> None:
        rng = np.random.default_rng(3)
        y = (rng.random(500) < 0.5).astype(float)
        prior = np.full(500, 0.5)
        empty = _terms(np.zeros(0), np.zeros(0), 0.5)
        informed = np.where(y == 1, 0.8, 0.2)
        backwards = 1.0 - informed
        ok = policy_promotion_decision(empty, None, y_true=y, p_challenger=informed, p_prior=prior)
        assert ok.promote and ok.rule == "first-model" and ok.brier_difference is not None
        assert ok.brier_difference == pytest.approx(0.04 - 0.25)
        worse = policy_promotion_decision(
            empty, None, y_true=y, p_challenger=backwards, p_prior=prior
        )
        assert not worse.promote and worse.brier_low is not None and worse.brier_low > 0
        nothing = policy_promotion_decision(empty, None)
        assert nothing.promote
        assert nothing.as_json()["champion_value"] is None

    def test_bad_arguments_raise(self) -> None:
        a = _terms(np.ones(3), np.ones(3), 0.5)
        with pytest.raises(ValueError):
            bootstrap_policy_difference(a, _terms(np.ones(2), np.ones(2), 0.5))
        with pytest.raises(ValueError):
            policy_promotion_decision(a, a, estimator="magic")


class TestNonInferiorityGate:
    """The product's default gate: promote unless worse than the champion beyond the margin."""

    @staticmethod
    def _pair(n: int, gap: float, seed: int = 0) -> tuple[PolicyTerms, PolicyTerms]:
        # Per-row rewards of two greedy policies on the same logged decisions (propensity 0.5):
        # the challenger's mean reward is the champion's minus ``gap``.
        # Paired: the challenger disagrees with the champion on a tenth of the rows, losing
        # round(gap * n) more of them than it wins, so the difference is exactly -gap.
        rng = np.random.default_rng(seed)
        champion = (rng.random(n) < 0.5).astype(float)
        challenger = champion.copy()
        wins = n // 20
        losses = wins + round(gap * n)
        challenger[rng.choice(np.flatnonzero(champion == 0), wins, replace=False)] = 1.0
        challenger[rng.choice(np.flatnonzero(champion == 1), losses, replace=False)] = 0.0
        ones, zeros = np.ones(n), np.zeros(n)
        # Propensity 1: each estimate is the mean reward itself.
        return (
            PolicyTerms(challenger, ones, ones, zeros, zeros),
            PolicyTerms(champion, ones, ones, zeros, zeros),
        )

    def test_identical_challenger_passes(self) -> None:
        challenger, _ = self._pair(300, 0.0)
        decision = policy_promotion_decision(
            challenger, challenger, rule="non-inferiority", margin=0.02
        )
        assert decision.promote and decision.rule == "non-inferiority"
        assert decision.low == 0.0 and decision.margin == 0.02

    def test_noisy_small_difference_passes_and_clear_regression_is_refused(self) -> None:
        # A challenger a little better on few rows: the superiority test refuses it (the freeze
        # of issue #16), non-inferiority lets it through.
        better, champion = self._pair(200, -0.03, seed=1)
        sup = policy_promotion_decision(better, champion, rule="superiority")
        ni = policy_promotion_decision(better, champion, rule="non-inferiority", margin=0.02)
        assert not sup.promote and ni.promote
        worse, champion = self._pair(2_000, 0.2, seed=2)
        refused = policy_promotion_decision(worse, champion, rule="non-inferiority", margin=0.02)
        assert not refused.promote and refused.high is not None and refused.high < -0.02
        assert "beyond the margin" in refused.reason

    def test_margin_decides_a_small_regression(self) -> None:
        worse, champion = self._pair(20_000, 0.05, seed=3)
        assert not policy_promotion_decision(
            worse, champion, rule="non-inferiority", margin=0.02
        ).promote
        assert policy_promotion_decision(
            worse, champion, rule="non-inferiority", margin=0.1
        ).promote

    def test_guardrail_refuses_only_a_shown_regression(self) -> None:
        # A little worse on few rows: within noise and within the margin, so the guardrail
        # promotes it (where non-inferiority's lower bound does not clear the margin) ...
        slightly, champion = self._pair(200, 0.01, seed=4)
        guard = policy_promotion_decision(slightly, champion, rule="guardrail", margin=0.02)
        assert guard.difference is not None and guard.difference >= -0.02
        assert guard.promote and guard.rule == "guardrail"
        assert not policy_promotion_decision(
            slightly, champion, rule="non-inferiority", margin=0.02
        ).promote
        # ... and refuses a regression shown beyond noise, or one estimated beyond the margin.
        worse, champion = self._pair(2_000, 0.1, seed=5)
        shown = policy_promotion_decision(worse, champion, rule="guardrail", margin=0.5)
        assert not shown.promote and shown.high is not None and shown.high < 0
        assert "worse beyond noise" in shown.reason
        noisy, champion = self._pair(30, 0.3, seed=6)
        estimated = policy_promotion_decision(noisy, champion, rule="guardrail", margin=0.02)
        assert not estimated.promote and estimated.difference is not None
        assert estimated.difference < -0.02

    def test_settings_validate(self) -> None:
        from dukenet.learning.evaluation import PromotionGate

        assert PromotionGate().rule == "guardrail"
        for bad in ({"rule": "luck"}, {"margin": -0.1}, {"level": 0.4}, {"weight_clip": 0.5}):
            with pytest.raises(ValueError):
                PromotionGate(**bad)  # type: ignore[arg-type]
        empty = _terms(np.zeros(0), np.zeros(0), 0.5)
        assert not policy_promotion_decision(empty, empty, rule="non-inferiority").promote
        with pytest.raises(ValueError):
            policy_promotion_decision(empty, empty, rule="luck")
