"""Tests of the epsilon-greedy routing policy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dukenet.learning.policy import choose, expected_utility


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


class TestExpectedUtility:
    def test_formula(self) -> None:
        u = expected_utility(np.array([0.5, 0.9]), np.array([100, 400]), 1000.0)
        np.testing.assert_allclose(u, [400.0, 500.0])

    def test_infinite_value(self) -> None:
        u = expected_utility(np.array([0.0, 0.2]), np.array([5, 7]), math.inf)
        assert u[0] == -5.0 and math.isinf(u[1]) and u[1] > 0


class TestGreedy:
    def test_picks_max_utility_with_propensity_one(self) -> None:
        p = np.array([0.95, 0.90, 0.50])
        prices = np.array([90_000, 6_000, 1_000])
        decision = choose(p, prices, 1_000_000.0, epsilon=0.0, rng=_rng())
        assert decision.index == decision.greedy_index == 1
        assert decision.propensity == 1.0
        assert not decision.explored
        np.testing.assert_allclose(decision.utilities, p * 1e6 - prices)

    def test_buyer_preferring_quality_pays_more(self) -> None:
        p = np.array([0.95, 0.90])
        prices = np.array([90_000, 6_000])
        assert choose(p, prices, 1e6, epsilon=0.0, rng=_rng()).index == 1
        assert choose(p, prices, 1e7, epsilon=0.0, rng=_rng()).index == 0

    def test_ties_go_to_lower_price_then_lower_index(self) -> None:
        p = np.array([0.5, 0.6, 0.6, 0.6])
        prices = np.array([0, 100, 100, 100])
        # utilities: 500, 500, 500, 500 at value 1000: cheapest wins.
        assert choose(p, prices, 1000.0, epsilon=0.0, rng=_rng()).index == 0
        same = choose(np.array([0.7, 0.7]), np.array([10, 10]), 100.0, epsilon=0.0, rng=_rng())
        assert same.index == 0

    def test_infinite_value_ranks_by_p_then_price(self) -> None:
        p = np.array([0.8, 0.9, 0.9])
        prices = np.array([1, 500, 300])
        decision = choose(p, prices, math.inf, epsilon=0.0, rng=_rng())
        assert decision.index == 2


class TestExploration:
    def test_propensities_are_exact(self) -> None:
        p = np.array([0.1, 0.9, 0.5, 0.3])
        prices = np.zeros(4)
        eps, k = 0.2, 4
        seen: dict[int, float] = {}
        counts = np.zeros(k)
        rng = _rng(7)
        n = 10_000
        for _ in range(n):
            d = choose(p, prices, 1.0, epsilon=eps, rng=rng)
            counts[d.index] += 1
            seen[d.index] = d.propensity
        expected = np.full(k, eps / k)
        expected[1] += 1 - eps
        np.testing.assert_allclose([seen[i] for i in range(k)], expected)
        np.testing.assert_allclose(counts / n, expected, atol=0.015)

    def test_epsilon_one_is_uniform(self) -> None:
        d = choose(np.array([0.2, 0.4, 0.6]), np.zeros(3), 1.0, epsilon=1.0, rng=_rng())
        assert d.propensity == pytest.approx(1 / 3)

    def test_single_candidate(self) -> None:
        d = choose(np.array([0.3]), np.array([5]), 10.0, epsilon=0.5, rng=_rng())
        assert (d.index, d.propensity) == (0, 1.0)

    def test_seeded_rng_reproduces_choices(self) -> None:
        p, prices = np.linspace(0.1, 0.9, 9), np.zeros(9)

        def run(seed: int) -> list[int]:
            rng = _rng(seed)
            return [choose(p, prices, 1.0, epsilon=0.5, rng=rng).index for _ in range(50)]

        assert run(3) == run(3)
        assert run(3) != run(4)


class TestValidation:
    @pytest.mark.parametrize(
        ("p", "prices"),
        [
            (np.array([]), np.array([])),
            (np.array([0.5, 0.5]), np.array([1])),
            (np.array([[0.5]]), np.array([[1]])),
            (np.array([math.nan]), np.array([1])),
            (np.array([1.5]), np.array([1])),
            (np.array([0.5]), np.array([-1])),
        ],
    )
    def test_bad_inputs_raise(self, p: np.ndarray, prices: np.ndarray) -> None:
        with pytest.raises(ValueError):
            choose(p, prices, 1.0, epsilon=0.1, rng=_rng())

    @pytest.mark.parametrize("eps", [-0.1, 1.1, math.nan])
    def test_bad_epsilon_raises(self, eps: float) -> None:
        with pytest.raises(ValueError):
            choose(np.array([0.5]), np.array([1]), 1.0, epsilon=eps, rng=_rng())


class TestFocusedExploration:
    P = np.array([0.9, 0.85, 0.8, 0.3, 0.2])
    PRICES = np.array([50.0, 40.0, 30.0, 5.0, 1.0])

    def _propensities(self, **kwargs: object) -> np.ndarray:
        """The exact probability of each candidate, read off the decisions' propensities."""
        found = np.full(self.P.size, np.nan)
        rng = np.random.default_rng(0)
        for _ in range(3000):
            d = choose(self.P, self.PRICES, 1000.0, rng=rng, **kwargs)  # type: ignore[arg-type]
            found[d.index] = d.propensity
        return found

    def test_propensities_sum_to_one_and_match_frequencies(self) -> None:
        rng = np.random.default_rng(1)
        counts = np.zeros(self.P.size)
        props = self._propensities(epsilon=0.3, top_k=2, floor=0.1)
        assert not np.isnan(props).any()  # the floor reaches every candidate
        assert props.sum() == pytest.approx(1.0)
        for _ in range(20_000):
            counts[
                choose(self.P, self.PRICES, 1000.0, epsilon=0.3, rng=rng, top_k=2, floor=0.1).index
            ] += 1
        assert counts / counts.sum() == pytest.approx(props, abs=0.01)

    def test_without_a_floor_only_the_top_k_are_explored(self) -> None:
        props = self._propensities(epsilon=0.4, top_k=2)
        explored = ~np.isnan(props)
        assert explored.sum() == 2
        assert np.nansum(props) == pytest.approx(1.0)

    def test_rates_are_validated(self) -> None:
        with pytest.raises(ValueError):
            choose(self.P, self.PRICES, 1000.0, epsilon=0.8, floor=0.3, rng=np.random.default_rng())
        with pytest.raises(ValueError):
            choose(self.P, self.PRICES, 1000.0, epsilon=0.1, top_k=0, rng=np.random.default_rng())
