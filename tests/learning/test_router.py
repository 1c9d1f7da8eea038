"""Tests of DukeRouter: learning, fallbacks, persistence and speed."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from dukenet.learning.evaluation import classifier_metrics
from dukenet.learning.features import TaskFeatures
from dukenet.learning.router import TRUSTED_TYPES, DukeRouter, OutcomeSample, RouterConfig

CODE = "Write a python function that {} a list of {}."
QUIZ = "Which answer is correct about {} and {}? A) one B) two C) three"
VERBS = ["sorts", "reverses", "filters", "sums", "merges", "splits", "counts", "zips"]
NOUNS = ["numbers", "strings", "tuples", "dates", "files", "users", "prices", "words"]


def _tasks(template: str, n: int, offset: int = 0) -> list[str]:
    return [
        template.format(VERBS[(i + offset) % 8], NOUNS[((i + offset) * 3 + i // 8) % 8]) + f" #{i}"
        for i in range(n)
    ]


def _world(n_per_kind: int, seed: int) -> list[OutcomeSample]:
    """Agent 'coder' is good at code, 'quizzer' at quizzes, 'generalist' middling at both."""
    rng = np.random.default_rng(seed)
    rates = {
        ("code", "coder"): 0.9,
        ("code", "quizzer"): 0.2,
        ("code", "generalist"): 0.6,
        ("quiz", "coder"): 0.3,
        ("quiz", "quizzer"): 0.9,
        ("quiz", "generalist"): 0.6,
    }
    samples = []
    for kind, template in (("code", CODE), ("quiz", QUIZ)):
        for i, text in enumerate(_tasks(template, n_per_kind)):
            agent = ("coder", "quizzer", "generalist")[int(rng.integers(3))]
            success = bool(rng.random() < rates[(kind, agent)])
            samples.append(OutcomeSample(f"{kind}-{i}", text, 4, agent, success))
    return samples


@pytest.fixture(scope="module")
def router() -> DukeRouter:
    return DukeRouter.fit(_world(300, seed=0), RouterConfig())


class TestLearning:
    def test_predicts_who_is_good_at_what(self, router: DukeRouter) -> None:
        new = [TaskFeatures(t, 4) for t in _tasks(CODE, 20, offset=3) + _tasks(QUIZ, 20, offset=5)]
        p = router.predict_proba(new, ["coder", "quizzer", "generalist"])
        assert p.shape == (40, 3)
        assert ((p > 0) & (p < 1)).all()
        code, quiz = p[:20].mean(axis=0), p[20:].mean(axis=0)
        assert code[0] > code[2] > code[1]
        assert quiz[1] > quiz[2] > quiz[0]
        assert code[0] == pytest.approx(0.9, abs=0.1)
        assert quiz[0] == pytest.approx(0.3, abs=0.12)

    def test_beats_base_rates_on_held_out_data(self, router: DukeRouter) -> None:
        held_out = _world(150, seed=1)
        y = np.array([s.success for s in held_out])
        agents = sorted({s.agent for s in held_out})
        p_all = router.predict_proba([TaskFeatures(s.description, 4) for s in held_out], agents)
        p = p_all[np.arange(len(held_out)), [agents.index(s.agent) for s in held_out]]
        base = np.array([router.stats[s.agent].rate for s in held_out])
        assert classifier_metrics(y, p)["brier"] < classifier_metrics(y, base)["brier"] - 0.03
        assert classifier_metrics(y, p)["roc_auc"] > 0.75

    def test_fit_is_deterministic(self) -> None:
        samples = _world(60, seed=2)
        tasks = [TaskFeatures(QUIZ.format("x", "y"), 4)]
        a = DukeRouter.fit(samples, RouterConfig()).predict_proba(tasks, ["coder", "quizzer"])
        b = DukeRouter.fit(samples, RouterConfig()).predict_proba(tasks, ["coder", "quizzer"])
        np.testing.assert_array_equal(a, b)

    def test_records_agents_and_stats(self, router: DukeRouter) -> None:
        assert router.agents == ("coder", "generalist", "quizzer")
        assert sum(s.n for s in router.stats.values()) == router.n_samples == 600


class TestFallbacks:
    def test_unseen_agent_gets_population_average(self, router: DukeRouter) -> None:
        tasks = [TaskFeatures(t, 4) for t in _tasks(CODE, 5)]
        p = router.predict_proba(tasks, ["coder", "brand-new", "quizzer"])
        assert ((p[:, 1] > p[:, 2]) & (p[:, 1] < p[:, 0])).all()

    def test_rare_and_single_class_agents_are_shrunk_not_crashing(self) -> None:
        samples = _world(100, seed=3)
        samples += [OutcomeSample("lucky-1", CODE.format("a", "b"), 4, "lucky", True)]
        samples += [
            OutcomeSample(f"bad-{i}", QUIZ.format("a", i), 4, "always-fails", False)
            for i in range(8)
        ]
        router = DukeRouter.fit(samples, RouterConfig(min_samples_per_agent=5))
        p = router.predict_proba(
            [TaskFeatures(CODE.format("c", "d"), 4)], ["lucky", "always-fails"]
        )
        assert 0.3 < p[0, 0] < 0.95  # one success is weak evidence
        assert 0.01 < p[0, 1] < 0.5  # eight failures are stronger evidence

    def test_no_samples_predicts_one_half(self) -> None:
        router = DukeRouter.fit([], RouterConfig())
        p = router.predict_proba([TaskFeatures("anything", 3)], ["a", "b"])
        np.testing.assert_allclose(p, 0.5)
        assert router.agents == ()

    def test_empty_inputs_give_empty_matrices(self, router: DukeRouter) -> None:
        assert router.predict_proba([], ["coder"]).shape == (0, 1)
        assert router.predict_proba([TaskFeatures("x", 1)], []).shape == (1, 0)


def _priced_market(seed: int) -> tuple[list[OutcomeSample], dict[str, float]]:
    """Five agents whose success rate rises with their list price, well observed, and two
    rarely seen ones (one dear, one cheap) with the same two outcomes each."""
    rng = np.random.default_rng(seed)
    prices = {"a1": 1.0, "a2": 3.0, "a3": 10.0, "a4": 30.0, "a5": 100.0}
    rates = {"a1": 0.2, "a2": 0.35, "a3": 0.5, "a4": 0.65, "a5": 0.8}
    texts = _tasks(CODE, 400) + _tasks(QUIZ, 400)
    samples = [
        OutcomeSample(f"t{i}", text, 4, agent, bool(rng.random() < rates[agent]))
        for i, text in enumerate(texts)
        for agent in [list(rates)[i % 5]]
    ]
    for agent, price in (("rare-dear", 100.0), ("rare-cheap", 1.0)):
        prices[agent] = price
        samples += [
            OutcomeSample(f"{agent}-{i}", texts[i], 4, agent, bool(i % 2)) for i in range(2)
        ]
    return samples, prices


class TestPricePrior:
    def test_a_rarely_seen_agent_starts_where_agents_of_its_price_stand(self) -> None:
        samples, prices = _priced_market(seed=4)
        task = [TaskFeatures(CODE.format("sorts", "dates"), 4)]
        agents = ["rare-dear", "rare-cheap"]
        with_prior = DukeRouter.fit(samples, RouterConfig(price_prior=True), agent_prices=prices)
        p = with_prior.predict_proba(task, agents)[0]
        assert p[0] > p[1] + 0.2  # same evidence, priors apart by price
        without = DukeRouter.fit(samples, RouterConfig(), agent_prices=prices)
        q = without.predict_proba(task, agents)[0]
        assert abs(q[0] - q[1]) < 0.02  # without the prior, price is ignored

    def test_well_observed_agents_keep_their_own_rate(self) -> None:
        samples, prices = _priced_market(seed=5)
        # a market where price says nothing: the dearest agent is the worst
        prices = {**prices, "a5": 0.5}
        router = DukeRouter.fit(samples, RouterConfig(price_prior=True), agent_prices=prices)
        p = router.predict_proba([TaskFeatures(CODE.format("sums", "files"), 4)], ["a1", "a5"])[0]
        assert p[1] > p[0] + 0.4

    def test_missing_prices_are_the_average_and_no_prices_change_nothing(self) -> None:
        samples, _ = _priced_market(seed=6)
        task = [TaskFeatures(QUIZ.format("x", "y"), 4)]
        plain = DukeRouter.fit(samples, RouterConfig()).predict_proba(task, ["a1", "a5"])
        unpriced = DukeRouter.fit(samples, RouterConfig(price_prior=True))
        np.testing.assert_allclose(unpriced.predict_proba(task, ["a1", "a5"]), plain, atol=1e-6)
        partial = DukeRouter.fit(
            samples, RouterConfig(price_prior=True), agent_prices={"a1": 1.0, "a5": -3.0}
        )
        assert partial.predict_proba(task, ["a1", "a5"]).shape == (1, 2)


class TestPersistence:
    def test_round_trip(self, router: DukeRouter, tmp_path: Path) -> None:
        path = tmp_path / "v1.skops"
        router.save(path)
        loaded = DukeRouter.load(path)
        tasks = [TaskFeatures(t, 4) for t in _tasks(QUIZ, 10, offset=2)]
        agents = ["quizzer", "coder", "unknown"]
        np.testing.assert_array_equal(
            loaded.predict_proba(tasks, agents), router.predict_proba(tasks, agents)
        )
        assert loaded.config == router.config
        assert loaded.agents == router.agents and loaded.stats == router.stats

    def test_artifact_holds_only_trusted_types(self, router: DukeRouter, tmp_path: Path) -> None:
        path = tmp_path / "v1.skops"
        router.save(path)
        assert set(sio.get_untrusted_types(file=path)) <= set(TRUSTED_TYPES)
        assert path.stat().st_size < 2_000_000

    def test_load_refuses_other_objects(self, tmp_path: Path) -> None:
        path = tmp_path / "other.skops"
        sio.dump({"format": "something else"}, path)
        with pytest.raises(ValueError):
            DukeRouter.load(path)


class TestConfig:
    def test_json_serialisable_and_round_trips(self) -> None:
        config = RouterConfig(C=2.0, seed=7)
        data = json.loads(json.dumps(asdict(config)))
        assert RouterConfig.from_dict({**data, "from_the_future": 1}) == config

    @pytest.mark.parametrize(
        "bad",
        [
            {"C": 0.0},
            {"C_shared": -1.0},
            {"prior_strength": 0.0},
            {"n_features": 4},
            {"max_iter": 0},
        ],
    )
    def test_invalid_values_raise(self, bad: dict[str, float]) -> None:
        with pytest.raises(ValueError):
            RouterConfig(**bad)  # type: ignore[arg-type]
