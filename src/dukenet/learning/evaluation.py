"""Evaluation of Duke: a stable held-out split, classifier metrics, and routing-policy metrics.

Classifier metrics judge P(success) predictions on held-out outcomes. Policy metrics judge
*routing*: on full-information data (every agent's outcome known for every prompt, e.g. RouterBench)
any policy can be scored exactly; on live bandit data use ``ips_estimate`` with the logged
propensities.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from dukenet.learning.router import OutcomeSample
from dukenet.learning.routerbench import FullInfoTable

_EPS = 1e-15


def split_hash(task_id: str, seed: int = 0) -> float:
    """Map ``(seed, task_id)`` to a uniform number in [0, 1) (BLAKE2b: stable across hosts)."""
    digest = hashlib.blake2b(f"{seed}\x1f{task_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def held_out_split(
    samples: Sequence[OutcomeSample], *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[OutcomeSample], list[OutcomeSample]]:
    """Split outcomes into (train, test), deterministically by task id; order is preserved.

    A sample goes to test iff ``split_hash(task_id, seed) < test_fraction``. Trade-off chosen: the
    side of an outcome depends on nothing but its task id and the seed, so it never changes as data
    grows (a champion was never trained on a challenger's held-out rows) and all outcomes of one
    task stay on one side (no leakage between agents on the same prompt). The price is that
    stratification by (agent, success) holds *in expectation* only: each stratum's test share is
    binomial around ``test_fraction`` (standard deviation ``sqrt(f (1 - f) / n)``, about 0.04 for a
    stratum of 100), not exact. Ranking by hash within each stratum would make it exact, but rows
    near each stratum's cut-off would change sides as the stratum grows, and rows of one task could
    be split.

    Raises:
        ValueError: when ``test_fraction`` is not in (0, 1).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    train: list[OutcomeSample] = []
    test: list[OutcomeSample] = []
    side: dict[str, bool] = {}
    for sample in samples:
        is_test = side.get(sample.task_id)
        if is_test is None:
            is_test = split_hash(sample.task_id, seed) < test_fraction
            side[sample.task_id] = is_test
        (test if is_test else train).append(sample)
    return train, test


def classifier_metrics(y_true: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Score probabilistic predictions of success (threshold 0.5 for the label metrics).

    Args:
        y_true: (n,) bool or 0/1 outcomes.
        p: (n,) predicted P(success).

    Returns:
        ``accuracy, precision, recall, f1, roc_auc, brier, log_loss, n, base_rate, tp, fp, tn, fn``
        (floats; ``roc_auc`` is nan when only one class is present, everything but ``n`` is nan when
        ``n == 0``; precision/recall/f1 are 0 when undefined).

    Raises:
        ValueError: on shape mismatch.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    q = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != q.shape:
        raise ValueError(f"shape mismatch: y_true {y.shape} vs p {q.shape}")
    n = y.size
    names = ("accuracy", "precision", "recall", "f1", "roc_auc", "brier", "log_loss", "base_rate")
    if n == 0:
        return {
            **dict.fromkeys(names, math.nan),
            "n": 0.0,
            "tp": 0.0,
            "fp": 0.0,
            "tn": 0.0,
            "fn": 0.0,
        }
    positive = y >= 0.5
    predicted = q >= 0.5
    tp = float(np.sum(predicted & positive))
    fp = float(np.sum(predicted & ~positive))
    tn = float(np.sum(~predicted & ~positive))
    fn = float(np.sum(~predicted & positive))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    single_class = bool(positive.all() or not positive.any())
    roc_auc = math.nan if single_class else float(roc_auc_score(positive, q))
    clipped = np.clip(q, _EPS, 1.0 - _EPS)
    log_loss = float(-np.mean(y * np.log(clipped) + (1.0 - y) * np.log(1.0 - clipped)))
    return {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc,
        "brier": float(np.mean((q - y) ** 2)),
        "log_loss": log_loss,
        "base_rate": float(positive.mean()),
        "n": float(n),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def brier_difference_interval(
    y_true: np.ndarray,
    p_champion: np.ndarray,
    p_challenger: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Paired bootstrap of ``Brier(challenger) - Brier(champion)`` on the same rows.

    Returns ``(difference, low, high)``; the challenger is better beyond noise when ``high < 0``.
    All arrays have shape (n,), n >= 1.
    """
    y = np.asarray(y_true, dtype=np.float64)
    loss_diff = (np.asarray(p_challenger, dtype=np.float64) - y) ** 2 - (
        np.asarray(p_champion, dtype=np.float64) - y
    ) ** 2
    if loss_diff.ndim != 1 or loss_diff.size == 0:
        raise ValueError("need at least one row of 1-D arrays")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, loss_diff.size, size=(n_boot, loss_diff.size))
    means = loss_diff[draws].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(loss_diff.mean()), float(low), float(high)


def ips_estimate(
    rewards: np.ndarray,
    logging_propensities: np.ndarray,
    target_probabilities: np.ndarray,
    *,
    self_normalized: bool = True,
) -> float:
    """Estimate a target policy's value from logged bandit decisions (inverse propensity scoring).

    Args:
        rewards: (n,) observed rewards of the logged choices (e.g. success 0/1, or utility in sat).
        logging_propensities: (n,) probability the logging policy had of its choice (> 0).
        target_probabilities: (n,) probability the target policy gives the same choice.
        self_normalized: divide by the sum of weights, not n (lower variance, slightly biased).
    """
    r = np.asarray(rewards, dtype=np.float64)
    mu = np.asarray(logging_propensities, dtype=np.float64)
    pi = np.asarray(target_probabilities, dtype=np.float64)
    if not (r.shape == mu.shape == pi.shape) or r.ndim != 1:
        raise ValueError("rewards and probabilities must be 1-D arrays of one shape")
    if r.size == 0:
        return math.nan
    if (mu <= 0).any():
        raise ValueError("logging propensities must be positive")
    weights = pi / mu
    total = float(weights.sum())
    if self_normalized:
        return float(weights @ r) / total if total > 0 else math.nan
    return float(weights @ r) / r.size


@dataclass(frozen=True)
class PolicyResult:
    """How a routing policy did on a full-information table.

    Attributes:
        success_rate: share of prompts whose chosen agent succeeded, in [0, 1].
        cost_per_1k_usd: USD spent per 1,000 prompts.
        n: number of prompts.
        choices: agent -> number of prompts routed to it.
    """

    success_rate: float
    cost_per_1k_usd: float
    n: int
    choices: dict[str, int]


def evaluate_full_information(chosen: Sequence[str], outcomes: FullInfoTable) -> PolicyResult:
    """Score routing prompt i to agent ``chosen[i]`` using the recorded outcomes and costs.

    Raises:
        ValueError: when ``len(chosen) != outcomes.n_prompts`` or an agent is not in the table.
    """
    if len(chosen) != outcomes.n_prompts:
        raise ValueError(f"{len(chosen)} choices for {outcomes.n_prompts} prompts")
    column = {agent: j for j, agent in enumerate(outcomes.agents)}
    unknown = sorted({agent for agent in chosen if agent not in column})
    if unknown:
        raise ValueError(f"agents not in the table: {unknown}")
    cols = np.array([column[agent] for agent in chosen], dtype=np.int64)
    return _result(outcomes, cols)


def single_agent_results(table: FullInfoTable) -> dict[str, PolicyResult]:
    """Score every "always route to agent a" policy; agent -> result."""
    return {
        agent: _result(table, np.full(table.n_prompts, j, dtype=np.int64))
        for j, agent in enumerate(table.agents)
    }


def best_single_agent(table: FullInfoTable) -> tuple[str, PolicyResult]:
    """Return the single agent with the highest success rate (ties: lower cost) and its result."""
    results = single_agent_results(table)
    best = min(results, key=lambda a: (-results[a].success_rate, results[a].cost_per_1k_usd))
    return best, results[best]


def random_routing_result(table: FullInfoTable, seed: int = 0) -> PolicyResult:
    """Score uniform random routing: one agent per prompt drawn with ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return _result(table, rng.integers(0, table.n_agents, size=table.n_prompts))


def oracle_result(table: FullInfoTable) -> PolicyResult:
    """Score the oracle: per prompt the cheapest agent that succeeded, else the cheapest agent."""
    cost = np.where(table.success, table.cost_usd, np.inf)
    cols = np.argmin(cost, axis=1)
    nobody = ~table.success.any(axis=1)
    cols[nobody] = np.argmin(table.cost_usd[nobody], axis=1)
    return _result(table, cols.astype(np.int64))


def oracle_gain_recovered(
    result: PolicyResult, best_single: PolicyResult, oracle: PolicyResult
) -> float:
    """Share of the oracle's success-rate gain over the best single agent that ``result`` recovers.

    ``(result - best) / (oracle - best)`` on success rate; nan when the oracle gains nothing.
    """
    gain = oracle.success_rate - best_single.success_rate
    if gain <= 0:
        return math.nan
    return (result.success_rate - best_single.success_rate) / gain


def _result(table: FullInfoTable, cols: np.ndarray) -> PolicyResult:
    """Score the column choice ``cols`` (n_prompts,) on ``table``."""
    rows = np.arange(table.n_prompts)
    n = table.n_prompts
    counts = Counter(table.agents[int(j)] for j in cols)
    return PolicyResult(
        success_rate=float(table.success[rows, cols].mean()) if n else math.nan,
        cost_per_1k_usd=float(table.cost_usd[rows, cols].mean() * 1000.0) if n else math.nan,
        n=n,
        choices=dict(sorted(counts.items())),
    )
