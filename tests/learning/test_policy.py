"""Tests of the routing policies: epsilon-greedy and Thompson sampling."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dukenet.config import Settings
from dukenet.learning.features import TaskFeatures
from dukenet.learning.policy import (
    canary_mix,
    choose,
    choose_thompson,
    expected_utility,
    greedy_index,
)
from dukenet.learning.router import DukeRouter, OutcomeSample, RouterConfig


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


class TestThompson:
    """Thompson sampling on the router's posterior (``choose_thompson``)."""

    MEAN = np.array([1.5, 1.2, 0.2, -1.0, 0.8])
    SD = np.array([0.2, 0.6, 1.0, 0.3, 0.5])
    PRICES = np.array([400.0, 300.0, 100.0, 10.0, 900.0])
    VALUE = 2_000.0

    def _run(self, n: int, seed: int = 0, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        """Choice frequencies and mean propensity vectors over ``n`` seeded decisions."""
        rng = np.random.default_rng(seed)
        counts = np.zeros(self.MEAN.size)
        mean_propensities = np.zeros(self.MEAN.size)
        for _ in range(n):
            d = choose_thompson(self.MEAN, self.SD, self.PRICES, self.VALUE, rng=rng, **kwargs)  # type: ignore[arg-type]
            assert d.propensities.sum() == pytest.approx(1.0)
            assert d.propensity == d.propensities[d.index] > 0
            counts[d.index] += 1
            mean_propensities += d.propensities
        return counts / n, mean_propensities / n

    def test_propensities_sum_to_one_and_match_choice_frequencies(self) -> None:
        frequencies, propensities = self._run(4_000, floor=0.05, n_draws=64)
        # Several candidates really compete, so the check is not trivially about one agent.
        assert (frequencies > 0.05).sum() >= 3
        np.testing.assert_allclose(frequencies, propensities, atol=0.015)

    def test_floor_gives_every_candidate_traffic(self) -> None:
        rng = np.random.default_rng(1)
        for _ in range(200):
            d = choose_thompson(self.MEAN, self.SD, self.PRICES, self.VALUE, rng=rng, floor=0.1)
            assert (d.propensities >= 0.1 / 5 - 1e-12).all()
        frequencies, _ = self._run(3_000, seed=2, floor=0.1)
        # Agent 3 (p ~ 0.27) never wins a draw; the floor alone sends it 2% of tasks.
        assert frequencies[3] == pytest.approx(0.02, abs=0.008)

    def test_cost_cap_bounds_what_exploration_charges(self) -> None:
        rng = np.random.default_rng(3)
        greedy = choose_thompson(self.MEAN, self.SD, self.PRICES, self.VALUE, rng=rng, scale=0.0)
        cap_price = self.PRICES[greedy.greedy_index] * 1.5
        seen = set()
        for _ in range(2_000):
            d = choose_thompson(
                self.MEAN,
                self.SD,
                self.PRICES,
                self.VALUE,
                rng=rng,
                floor=0.2,
                cost_cap=0.5,
                cost_cap_kind="price",
            )
            assert self.PRICES[d.index] <= cap_price
            assert (d.propensities[cap_price < self.PRICES] == 0).all()
            seen.add(d.index)
        assert seen == set(np.flatnonzero(cap_price >= self.PRICES).tolist())
        uncapped = self._run(2_000, seed=4, floor=0.2)[0]
        assert uncapped[cap_price < self.PRICES].sum() > 0  # without the cap they are explored

    def test_expected_cost_cap_bounds_the_mean_price_and_keeps_every_agent(self) -> None:
        prices = np.array([400.0, 300.0, 100.0, 10.0, 3_000.0])  # one agent 10x the greedy one
        kwargs: dict[str, Any] = {"floor": 0.3, "cost_cap": 0.2, "cost_cap_kind": "expected"}
        rng = np.random.default_rng(5)
        greedy_price = prices[
            choose_thompson(self.MEAN, self.SD, prices, self.VALUE, rng=rng, scale=0.0).index
        ]
        counts = np.zeros(prices.size)
        mean_propensities = np.zeros(prices.size)
        uncapped_price = 0.0
        for _ in range(200):
            free = choose_thompson(self.MEAN, self.SD, prices, self.VALUE, rng=rng, floor=0.3)
            uncapped_price += float(free.propensities @ prices) / 200
        n = 8_000
        for _ in range(n):
            d = choose_thompson(self.MEAN, self.SD, prices, self.VALUE, rng=rng, **kwargs)
            assert d.propensities.sum() == pytest.approx(1.0)
            assert d.propensities @ prices <= 1.2 * greedy_price + 1e-9
            assert (d.propensities > 0).all()  # even the dearest agent stays explorable
            assert d.propensity == d.propensities[d.index]
            counts[d.index] += 1
            mean_propensities += d.propensities / n
        # Uncapped, this floor costs well above 1.2 x the greedy price on average; capped it
        # does not, and choices still follow the recorded propensities.
        assert uncapped_price > 1.3 * greedy_price
        np.testing.assert_allclose(counts / n, mean_propensities, atol=0.015)
        assert (counts / n) @ prices <= 1.2 * greedy_price * 1.05
        assert counts[4] > 0

    def test_default_cost_cap_kind_is_the_products(self) -> None:
        d = choose_thompson(
            self.MEAN, self.SD, self.PRICES, self.VALUE, rng=np.random.default_rng(1), cost_cap=0.2
        )
        assert d.details["cost_cap_kind"] == Settings().exploration_cost_cap_kind == "expected"

    def test_expected_cost_cap_leaves_cheap_exploration_alone(self) -> None:
        kwargs: dict[str, Any] = {"floor": 0.05, "n_draws": 64}
        free = choose_thompson(
            self.MEAN, self.SD, self.PRICES, self.VALUE, rng=np.random.default_rng(8), **kwargs
        )
        capped = choose_thompson(
            self.MEAN,
            self.SD,
            self.PRICES,
            self.VALUE,
            rng=np.random.default_rng(8),
            cost_cap=100.0,
            cost_cap_kind="expected",
            **kwargs,
        )
        np.testing.assert_array_equal(free.propensities, capped.propensities)
        assert capped.details["explore_share"] == 1.0

    def test_canary_mix_follows_its_mixture_propensities(self) -> None:
        rng = np.random.default_rng(9)
        other_mean = self.MEAN[::-1].copy()  # a challenger with other beliefs
        counts = np.zeros(self.MEAN.size)
        mean_propensities = np.zeros(self.MEAN.size)
        n = 6_000
        for _ in range(n):
            champion = choose_thompson(
                self.MEAN, self.SD, self.PRICES, self.VALUE, rng=rng, floor=0.05, n_draws=32
            )
            challenger = choose_thompson(
                other_mean, self.SD, self.PRICES, self.VALUE, rng=rng, floor=0.05, n_draws=32
            )
            d = canary_mix(champion, challenger, 0.25, rng)
            expected = 0.75 * champion.propensities + 0.25 * challenger.propensities
            np.testing.assert_allclose(d.propensities, expected)
            assert d.propensity == d.propensities[d.index]
            assert d.index == (challenger.index if d.details["canary"]["acted"] else champion.index)  # type: ignore[index]
            assert d.greedy_index == champion.greedy_index
            counts[d.index] += 1
            mean_propensities += d.propensities / n
        np.testing.assert_allclose(counts / n, mean_propensities, atol=0.015)

    def test_canary_mix_validates(self) -> None:
        rng = np.random.default_rng(0)
        d = choose_thompson(self.MEAN, self.SD, self.PRICES, self.VALUE, rng=rng)
        short = choose_thompson(self.MEAN[:3], self.SD[:3], self.PRICES[:3], self.VALUE, rng=rng)
        with pytest.raises(ValueError):
            canary_mix(d, d, 1.5, rng)
        with pytest.raises(ValueError):
            canary_mix(d, short, 0.1, rng)
        assert canary_mix(d, d, 0.0, rng).index == d.index

    def test_without_exploration_it_is_the_argmax(self) -> None:
        rng = np.random.default_rng(0)
        p = 1.0 / (1.0 + np.exp(-self.MEAN))
        for value in (self.VALUE, 200.0, 50_000.0, math.inf):
            d = choose_thompson(self.MEAN, self.SD, self.PRICES, value, rng=rng, scale=0.0)
            eps = choose(p, self.PRICES, value, epsilon=0.0, rng=rng)
            assert d.index == d.greedy_index == eps.index
            assert d.propensity == 1.0 and not d.explored
            if not math.isinf(value):
                assert d.index == int(np.argmax(p * value - self.PRICES))

    def test_certain_posterior_is_greedy(self) -> None:
        d = choose_thompson(
            self.MEAN, np.zeros(5), self.PRICES, self.VALUE, rng=np.random.default_rng(0)
        )
        assert (d.index, d.propensity) == (d.greedy_index, 1.0)

    def test_receipt_details(self) -> None:
        d = choose_thompson(
            self.MEAN, self.SD, self.PRICES, self.VALUE, rng=np.random.default_rng(0), n_draws=32
        )
        assert d.method == "thompson"
        assert d.details["n_draws"] == 32 and d.details["n_explorable"] == 5
        # The chosen agent won at least one of the 32 draws.
        assert d.propensity >= 1 / 32

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"floor": 1.5},
            {"floor": -0.1},
            {"scale": -1.0},
            {"cost_cap": -0.5},
            {"cost_cap": 1.0, "cost_cap_kind": "budget"},
            {"n_draws": 0},
        ],
    )
    def test_bad_settings_raise(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            choose_thompson(
                self.MEAN, self.SD, self.PRICES, 1.0, rng=np.random.default_rng(), **kwargs
            )

    def test_bad_posterior_raises(self) -> None:
        rng = np.random.default_rng()
        with pytest.raises(ValueError):
            choose_thompson(self.MEAN, -self.SD, self.PRICES, 1.0, rng=rng)
        with pytest.raises(ValueError):
            choose_thompson(self.MEAN, self.SD[:3], self.PRICES, 1.0, rng=rng)


def _outcomes(n: int, seed: int) -> list[OutcomeSample]:
    """Agents 'strong' (80% success) and 'weak' (40%) on 'n' tasks each; 'new' has none."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        for agent, rate in (("strong", 0.8), ("weak", 0.4)):
            samples.append(
                OutcomeSample(f"t{i}", f"Summarise report {i}.", 3, agent, rng.random() < rate)
            )
    return samples


class TestPosterior:
    """The router's Laplace posterior that Thompson sampling draws from."""

    TASK = [TaskFeatures("Summarise report 9999.", 3)]

    def test_uncertainty_shrinks_with_evidence_and_is_widest_for_a_new_agent(self) -> None:
        agents = ["strong", "weak", "new"]
        few = DukeRouter.fit(_outcomes(20, 0), RouterConfig())
        many = DukeRouter.fit(_outcomes(400, 0), RouterConfig())
        _, sd_few = few.predict_logit_features(few.featurize(self.TASK), agents)
        mean, sd_many = many.predict_logit_features(many.featurize(self.TASK), agents)
        assert (sd_many[0, :2] < sd_few[0, :2]).all()
        assert sd_many[0, :2].max() < 0.3
        # No outcomes: the prior alone, sqrt(4 / prior_strength) = 1 logit at the default.
        assert sd_few[0, 2] == sd_many[0, 2] == pytest.approx(1.0)
        p = many.predict_proba(self.TASK, agents)
        np.testing.assert_allclose(p, 1.0 / (1.0 + np.exp(-mean)), atol=1e-9)

    def test_an_agent_with_no_data_is_explored(self) -> None:
        router = DukeRouter.fit(_outcomes(400, 1), RouterConfig())
        agents = ["strong", "weak", "new"]
        mean, sd = router.predict_logit_features(router.featurize(self.TASK), agents)
        prices = np.array([100.0, 100.0, 100.0])
        rng = np.random.default_rng(5)
        chosen = [
            choose_thompson(mean[0], sd[0], prices, 10_000.0, rng=rng, floor=0.0).index
            for _ in range(2_000)
        ]
        share_new = chosen.count(2) / len(chosen)
        # The new agent is predicted as the average agent (~0.6 < 0.8) but its wide posterior
        # wins a real share of draws; the known weak agent almost never does.
        assert share_new > 0.1
        assert chosen.count(1) / len(chosen) < 0.01

    def test_covariance_survives_save_and_load(self, tmp_path: Path) -> None:
        router = DukeRouter.fit(_outcomes(50, 2), RouterConfig())
        router.save(tmp_path / "r.skops")
        loaded = DukeRouter.load(tmp_path / "r.skops")
        x = router.featurize(self.TASK)
        for a, b in zip(
            router.predict_logit_features(x, ["strong", "new"]),
            loaded.predict_logit_features(x, ["strong", "new"]),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)


def test_greedy_index_is_the_greedy_choice_of_choose() -> None:
    rng = np.random.default_rng(5)
    for trial in range(300):
        k = int(rng.integers(1, 12))
        # Coarse values make ties in utility and price common.
        p = rng.integers(0, 5, size=k) / 4
        prices = rng.integers(1, 4, size=k).astype(float) * 1_000
        value = math.inf if trial % 5 == 0 else float(rng.choice([4_000.0, 10_000.0]))
        expected = choose(p, prices, value, epsilon=0.0, rng=rng).greedy_index
        assert greedy_index(p, prices, value) == expected


class TestExplorationBudget:
    """The exploration budget and top-k bound what Thompson sampling explores, whatever the number
    of agents (``choose_thompson(budget=..., top_k=...)``)."""

    @staticmethod
    def _market(k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Many agents barely known (wide posteriors), one slightly ahead: plain Thompson explores
        # on most tasks.
        rng = np.random.default_rng(seed)
        mean = rng.normal(0.0, 0.3, k)
        mean[0] = 0.6
        return mean, np.full(k, 1.0), rng.uniform(10.0, 100.0, k)

    def test_plain_thompson_explores_more_with_more_agents(self) -> None:
        shares = []
        for k in (2, 55):
            mean, sd, prices = self._market(k)
            rng = np.random.default_rng(1)
            decisions = [choose_thompson(mean, sd, prices, 1e4, rng=rng) for _ in range(300)]
            shares.append(np.mean([d.explored for d in decisions]))
        assert shares[1] > 0.6 > shares[0]

    @pytest.mark.parametrize("k", [2, 11, 31, 55])
    def test_budget_bounds_the_explored_share(self, k: int) -> None:
        mean, sd, prices = self._market(k)
        rng = np.random.default_rng(2)
        explored = []
        for _ in range(1_500):
            d = choose_thompson(mean, sd, prices, 1e4, rng=rng, floor=0.05, budget=0.1)
            assert d.propensities.sum() == pytest.approx(1.0)
            assert 1.0 - d.propensities[d.greedy_index] <= 0.1 + 1e-12
            assert (d.propensities > 0).all()  # every agent stays explorable, off-policy too
            assert d.propensity == d.propensities[d.index]
            explored.append(d.explored)
        assert np.mean(explored) <= 0.1 + 0.03  # the bound holds in expectation, per decision

    def test_budget_and_expected_cost_cap_both_hold(self) -> None:
        mean, sd, prices = self._market(31)
        rng = np.random.default_rng(3)
        for _ in range(300):
            d = choose_thompson(
                mean, sd, prices, 1e4, rng=rng, floor=0.05, budget=0.3, cost_cap=0.2
            )
            g = d.greedy_index
            assert 1.0 - d.propensities[g] <= 0.3 + 1e-12
            assert d.propensities @ prices <= 1.2 * prices[g] + 1e-9

    def test_top_k_draws_only_among_the_best_and_the_floor_covers_the_rest(self) -> None:
        mean, sd, prices = self._market(55)
        value = 1e4
        utilities = expected_utility(1.0 / (1.0 + np.exp(-mean)), prices, value)
        best = set(np.argsort(-utilities)[:3].tolist())
        rng = np.random.default_rng(4)
        for _ in range(200):
            d = choose_thompson(mean, sd, prices, value, rng=rng, floor=0.05, top_k=3)
            others = [j for j in range(55) if j not in best]
            np.testing.assert_allclose(d.propensities[others], 0.05 / 55)
            assert d.propensities[sorted(best)].sum() == pytest.approx(1.0 - 52 * 0.05 / 55)

    def test_settings_reach_the_exploration(self) -> None:
        from dukenet.market.routing import exploration_from_settings

        exploration = exploration_from_settings(Settings(exploration_budget=0.2, thompson_top_k=4))
        assert exploration is not None
        assert (exploration.budget, exploration.top_k) == (0.2, 4)
        with pytest.raises(ValueError):
            choose_thompson(np.zeros(2), np.ones(2), np.ones(2), 10.0, rng=_rng(), budget=1.5)
        with pytest.raises(ValueError):
            choose_thompson(np.zeros(2), np.ones(2), np.ones(2), 10.0, rng=_rng(), top_k=0)
