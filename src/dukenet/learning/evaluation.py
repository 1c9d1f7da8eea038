"""Evaluation of Duke: a stable held-out split, classifier metrics, and routing-policy metrics.

Classifier metrics judge P(success) predictions on held-out outcomes. Policy metrics judge
*routing*: on full-information data (every agent's outcome known for every prompt, e.g. RouterBench)
any policy can be scored exactly; on live bandit data use ``ips_estimate`` with the logged
propensities.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve as sk_calibration_curve
from sklearn.metrics import roc_auc_score

from dukenet.learning.policy import greedy_index
from dukenet.learning.router import OutcomeSample
from dukenet.learning.routerbench import FullInfoTable

_EPS = 1e-15


def split_hash(task_id: str, seed: int = 0) -> float:
    """Map ``(seed, task_id)`` to a uniform number in [0, 1) (BLAKE2b: stable across hosts)."""
    digest = hashlib.blake2b(f"{seed}\x1f{task_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def held_out_split(
    samples: Sequence[OutcomeSample],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
) -> tuple[list[OutcomeSample], list[OutcomeSample]]:
    """Split outcomes into (train, test), stratified by label; order is preserved.

    ``samples`` must be in arrival order (oldest first) for the stability guarantee below.
    Outcomes are grouped by ``task_id`` (a content hash in the service), so all outcomes of one
    prompt sit on one side (no leakage between agents on the same prompt). A group's stratum is the
    label (``success``) of its first outcome.

    With ``stratify`` (the default) the groups of each stratum are assigned by *permuted blocks* in
    arrival order: ``test_fraction`` is rounded to ``p/q`` (``q <= 1000``), and in every run of
    ``q`` consecutive groups of a stratum exactly ``p`` slots, chosen by a seeded hash of (stratum,
    block, slot), are held out. So each stratum's held-out share is exact to within ``p`` groups,
    not binomial, and a group's side depends only on its arrival position within its stratum and the
    seed: appending outcomes never moves an earlier one (a champion was never trained on a
    challenger's held-out rows).

    The honest limit of that guarantee: exact stratification and "the side is a function of the
    row alone" cannot both hold (any per-row rule is binomial per stratum), so the side depends on
    arrival order. If an outcome is committed *after* a training run read rows recorded later than
    it (concurrent transactions), the next split shifts by one position the rows of its stratum
    recorded between the two, i.e. the few rows that were in flight at that moment; nothing older
    moves. ``stratify=False`` gives the order-free rule instead: a group is held out iff
    ``split_hash(task_id, seed) < test_fraction`` (stratified in expectation only; standard
    deviation of a stratum's share ``sqrt(f (1 - f) / n)``).

    Raises:
        ValueError: when ``test_fraction`` is not in (0, 1).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    share = Fraction(test_fraction).limit_denominator(1000)
    p, q = share.numerator, share.denominator
    if p == 0:
        p, q = 1, 1000
    elif p == q:
        p, q = 999, 1000
    train: list[OutcomeSample] = []
    test: list[OutcomeSample] = []
    side: dict[str, bool] = {}
    seen_in_stratum: Counter[bool] = Counter()
    slots: dict[tuple[bool, int], frozenset[int]] = {}
    for sample in samples:
        is_test = side.get(sample.task_id)
        if is_test is None:
            if stratify:
                stratum = bool(sample.success)
                position = seen_in_stratum[stratum]
                seen_in_stratum[stratum] += 1
                block, slot = divmod(position, q)
                if (stratum, block) not in slots:
                    slots[stratum, block] = _test_slots(stratum, block, p, q, seed)
                is_test = slot in slots[stratum, block]
            else:
                is_test = split_hash(sample.task_id, seed) < test_fraction
            side[sample.task_id] = is_test
        (test if is_test else train).append(sample)
    return train, test


def _test_slots(stratum: bool, block: int, p: int, q: int, seed: int) -> frozenset[int]:
    """The ``p`` held-out slots of ``stratum``'s block number ``block`` of ``q`` arrivals: the slots
    with the smallest ``split_hash`` of (stratum, block, slot)."""
    keys = [split_hash(f"{int(stratum)}\x1f{block}\x1f{i}", seed) for i in range(q)]
    return frozenset(sorted(range(q), key=keys.__getitem__)[:p])


def score_to_quality(score: float, *, scale_min: float = 1.0, scale_max: float = 10.0) -> float:
    """Map a judged score on ``[scale_min, scale_max]`` linearly to a quality in [0, 1].

    ``quality = (score - scale_min) / (scale_max - scale_min)``: on a 1-10 scale 1 -> 0.0,
    10 -> 1.0 and 7 -> 2/3; on a 1-5 Likert scale (``scale_max=5``) 4 -> 0.75. With the default
    ``success_threshold`` of 0.5 a 1-10 score counts as a success from 5.5 up, a 1-5 score from 3.
    Binary success is the scale ``[0, 1]``.

    Raises:
        ValueError: when the scale is empty or reversed, or ``score`` is NaN or outside it.
    """
    if not scale_max > scale_min:
        raise ValueError("scale_max must be greater than scale_min")
    if math.isnan(score) or not scale_min <= score <= scale_max:
        raise ValueError(f"score {score} is outside [{scale_min}, {scale_max}]")
    return (score - scale_min) / (scale_max - scale_min)


def success_labels(quality: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Return the success labels ``quality >= threshold`` (bool, same shape).

    The one place quality becomes a label, so training, evaluation and the policy reward agree;
    binary outcomes (quality 0.0/1.0) keep their label for any threshold in (0, 1].

    Raises:
        ValueError: when ``threshold`` is not in (0, 1].
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    return np.asarray(quality, dtype=np.float64) >= threshold


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
class CalibrationBin:
    """One reliability bin: predictions in ``(low, high]`` (the first bin includes 0).

    Attributes:
        low, high: bin edges of P(success).
        mean_predicted: mean predicted P(success) of the rows in the bin.
        observed_rate: share of those rows that succeeded.
        count: number of rows in the bin (empty bins are left out).
    """

    low: float
    high: float
    mean_predicted: float
    observed_rate: float
    count: int


@dataclass(frozen=True)
class Calibration:
    """A reliability diagram and its expected calibration error.

    ``ece = sum_b count_b / n * |observed_rate_b - mean_predicted_b|`` (Naeini, Cooper &
    Hauskrecht 2015, "Obtaining Well Calibrated Probabilities Using Bayesian Binning"), nan when
    there are no rows.
    """

    bins: list[CalibrationBin]
    ece: float
    n: int

    def as_json(self) -> list[dict[str, float | int]]:
        """Return the bins as JSON objects (``low, high, mean_predicted, observed_rate, count``)."""
        return [dataclasses.asdict(b) for b in self.bins]


def calibration_curve(y_true: np.ndarray, p: np.ndarray, *, n_bins: int = 10) -> Calibration:
    """Bin predictions into ``n_bins`` equal-width bins of [0, 1] and compare with outcomes.

    Mean predicted and observed rates come from ``sklearn.calibration.calibration_curve``
    (``strategy="uniform"``); the counts use the same binning (``np.searchsorted`` on the inner
    edges, so a bin is ``(low, high]`` and the first one also holds 0).

    Args:
        y_true: (n,) bool or 0/1 outcomes.
        p: (n,) predicted P(success) in [0, 1].
        n_bins: number of bins, at least 1.

    Raises:
        ValueError: on shape mismatch, ``n_bins < 1`` or predictions outside [0, 1].
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    q = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != q.shape:
        raise ValueError(f"shape mismatch: y_true {y.shape} vs p {q.shape}")
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    if q.size and (q.min() < 0.0 or q.max() > 1.0):
        raise ValueError("predictions must be in [0, 1]")
    if y.size == 0:
        return Calibration(bins=[], ece=math.nan, n=0)
    observed, predicted = sk_calibration_curve(
        (y >= 0.5).astype(np.int64), q, n_bins=n_bins, strategy="uniform"
    )
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], q), minlength=n_bins)
    occupied = np.flatnonzero(counts)
    bins = [
        CalibrationBin(
            low=float(edges[b]),
            high=float(edges[b + 1]),
            mean_predicted=float(predicted[k]),
            observed_rate=float(observed[k]),
            count=int(counts[b]),
        )
        for k, b in enumerate(occupied)
    ]
    ece = sum(b.count * abs(b.observed_rate - b.mean_predicted) for b in bins) / y.size
    return Calibration(bins=bins, ece=float(ece), n=int(y.size))


# ---------------------------------------------------------------------- off-policy evaluation


@dataclass(frozen=True)
class LoggedDecision:
    """One logged routing decision with its outcome (bandit feedback: only ``chosen`` was seen).

    Attributes:
        description, complexity: the task.
        candidates: agent keys the router chose among (the routing receipt's candidates).
        prices_sat: (K,) their prices in satoshis.
        chosen: index of the agent that did the task.
        propensity: probability the logging policy had of that choice, in (0, 1].
        success: the outcome's label (``quality >= success_threshold``).
        value_sat: the buyer's value of a success in satoshis,
            ``reference_price_sat * complexity / cost_weight`` (``inf`` when cost_weight is 0).
    """

    description: str
    complexity: int
    candidates: tuple[str, ...]
    prices_sat: tuple[float, ...]
    chosen: int
    propensity: float
    success: bool
    value_sat: float

    def __post_init__(self) -> None:
        if not self.candidates or len(self.candidates) != len(self.prices_sat):
            raise ValueError("need one price per candidate and at least one candidate")
        if not 0 <= self.chosen < len(self.candidates):
            raise ValueError("chosen must index a candidate")
        if not 0.0 < self.propensity <= 1.0:
            raise ValueError("propensity must be in (0, 1]")
        if not self.value_sat > 0.0:
            raise ValueError("value_sat must be positive")


def normalized_utility(
    success: np.ndarray | float, price_sat: np.ndarray | float, value_sat: np.ndarray | float
) -> np.ndarray:
    """Return the reward of a routing decision: ``success - price_sat / value_sat``.

    This is the utility the router maximises, ``P(success) * V - price`` (see ``policy``), divided
    by the task's value of a success ``V > 0``. Dividing by ``V`` leaves every routing decision
    unchanged (it is one positive constant per task) and puts all tasks on one scale, in
    "successes": 1 is a success at no cost, a price equal to the value costs one success. With
    ``V = inf`` ("quality at any price") the reward is the success alone. With ``success`` a
    probability it is the expected reward under the model (the reward model of the doubly robust
    estimator). Success rate and price are also reported separately (``GreedyPolicyEvaluation``).
    """
    s = np.asarray(success, dtype=np.float64)
    price = np.asarray(price_sat, dtype=np.float64)
    value = np.asarray(value_sat, dtype=np.float64)
    utility: np.ndarray = np.asarray(s - price / value, dtype=np.float64)
    return utility


@dataclass(frozen=True, eq=False)
class PolicyTerms:
    """What the off-policy estimators need about one target policy on ``n`` logged decisions.

    Attributes (all shape (n,), float64):
        rewards: observed reward of each logged choice.
        propensities: probability the logging policy had of its choice, > 0.
        target_probabilities: probability the target policy gives the logged choice.
        reward_hat_logged: the reward model's prediction for the logged choice.
        reward_hat_target: the reward model's expected reward under the target policy,
            ``sum_a pi(a | x) r_hat(x, a)``.
        weight_clip: cap ``M`` on the importance weight ``pi / mu`` in the doubly robust terms
            (None: uncapped, the unbiased estimator). Capping is the clipped doubly robust
            estimator (Su, Dimakopoulou, Krishnamurthy & Dudik 2020, "Doubly robust off-policy
            evaluation with shrinkage", ICML): on rows whose logged choice was unlikely (weight
            above ``M``) the correction ``w * (r - r_hat)`` is shrunk to ``M * (r - r_hat)``,
            trading a bias bounded by the reward model's error there for a variance bounded by
            ``M``. IPS and SNIPS are never capped.
    """

    rewards: np.ndarray
    propensities: np.ndarray
    target_probabilities: np.ndarray
    reward_hat_logged: np.ndarray
    reward_hat_target: np.ndarray
    weight_clip: float | None = None

    def __post_init__(self) -> None:
        names = (
            "rewards",
            "propensities",
            "target_probabilities",
            "reward_hat_logged",
            "reward_hat_target",
        )
        arrays = [np.asarray(getattr(self, name), dtype=np.float64) for name in names]
        if arrays[0].ndim != 1 or any(a.shape != arrays[0].shape for a in arrays):
            raise ValueError("PolicyTerms needs 1-D arrays of one shape")
        if (arrays[1] <= 0).any():
            raise ValueError("logging propensities must be positive")
        if self.weight_clip is not None and not self.weight_clip >= 1.0:
            raise ValueError("weight_clip must be at least 1")
        for name, array in zip(names, arrays, strict=True):
            object.__setattr__(self, name, array)

    @property
    def n(self) -> int:
        """Number of logged decisions."""
        return int(self.rewards.size)

    def ips(self) -> float:
        """Inverse propensity score estimate of the target's value (see ``ips_estimate``)."""
        return ips_estimate(
            self.rewards, self.propensities, self.target_probabilities, self_normalized=False
        )

    def snips(self) -> float:
        """Self-normalised IPS estimate (see ``snips_estimate``)."""
        return snips_estimate(self.rewards, self.propensities, self.target_probabilities)

    def dr_terms(self) -> np.ndarray:
        """Per-decision doubly robust terms (their mean is ``dr()``), shape (n,); importance
        weights capped at ``weight_clip`` when it is set."""
        weights = self.target_probabilities / self.propensities
        if self.weight_clip is not None:
            weights = np.minimum(weights, self.weight_clip)
        terms: np.ndarray = self.reward_hat_target + weights * (
            self.rewards - self.reward_hat_logged
        )
        return terms

    def dr(self) -> float:
        """Doubly robust estimate (see ``dr_estimate``); nan when there are no rows."""
        return float(self.dr_terms().mean()) if self.n else math.nan

    def estimate(self, estimator: str) -> float:
        """Return the ``"ips"``, ``"snips"`` or ``"dr"`` estimate.

        Raises:
            ValueError: on an unknown estimator.
        """
        if estimator == "dr":
            return self.dr()
        if estimator == "snips":
            return self.snips()
        if estimator == "ips":
            return self.ips()
        raise ValueError(f"unknown estimator {estimator!r}; use 'ips', 'snips' or 'dr'")


def snips_estimate(
    rewards: np.ndarray, logging_propensities: np.ndarray, target_probabilities: np.ndarray
) -> float:
    """Self-normalised inverse propensity estimate of a target policy's value.

    ``V = sum_i w_i r_i / sum_i w_i`` with ``w_i = pi(a_i | x_i) / mu(a_i | x_i)``: the IPS sum
    divided by the sum of the weights instead of n, which removes IPS's sensitivity to the scale of
    the rewards and lowers its variance at the cost of a bias that vanishes as n grows
    (Swaminathan & Joachims 2015, "The Self-Normalized Estimator for Counterfactual Learning",
    NeurIPS; the weighted importance sampling of Hesterberg 1995). nan when no weight is positive
    (the target never agrees with the log). Shapes as ``ips_estimate``.
    """
    return ips_estimate(rewards, logging_propensities, target_probabilities, self_normalized=True)


def dr_estimate(
    rewards: np.ndarray,
    logging_propensities: np.ndarray,
    target_probabilities: np.ndarray,
    reward_hat_logged: np.ndarray,
    reward_hat_target: np.ndarray,
) -> float:
    """Doubly robust estimate of a target policy's value from logged bandit decisions.

    ``V = 1/n sum_i [ sum_a pi(a | x_i) r_hat(x_i, a)
    + pi(a_i | x_i) / mu(a_i | x_i) (r_i - r_hat(x_i, a_i)) ]``: the reward model's value of the
    target policy (the direct method), corrected by importance-weighted residuals of the logged
    choices. Unbiased when either the propensities or the reward model are correct, and with a good
    reward model its variance is far below IPS's (Dudík, Langford & Li 2011, "Doubly Robust Policy
    Evaluation and Learning", ICML, eq. 2). All arrays shape (n,); nan when n == 0.

    Raises:
        ValueError: on shape mismatch or a non-positive propensity.
    """
    return PolicyTerms(
        rewards=rewards,
        propensities=logging_propensities,
        target_probabilities=target_probabilities,
        reward_hat_logged=reward_hat_logged,
        reward_hat_target=reward_hat_target,
    ).dr()


@dataclass(frozen=True, eq=False)
class GreedyPolicyEvaluation:
    """A router's greedy policy evaluated off-policy on logged decisions.

    Attributes:
        utility: terms for the reward ``normalized_utility`` (the promotion metric).
        success: terms for the reward "succeeded" (0/1), for the success rate.
        target_index: (n,) the candidate the target policy picks per decision.
        target_price_sat: (n,) its price: the target's cost is known exactly, not estimated.
    """

    utility: PolicyTerms
    success: PolicyTerms
    target_index: np.ndarray
    target_price_sat: np.ndarray

    def summary(self) -> dict[str, float]:
        """Return ``n, match_rate, ips, snips, dr`` (normalised utility), ``success_snips,
        success_dr`` and ``mean_price_sat`` (exact); nan where undefined (no rows)."""
        n = self.utility.n
        return {
            "n": float(n),
            "match_rate": float(self.utility.target_probabilities.mean()) if n else math.nan,
            "ips": self.utility.ips(),
            "snips": self.utility.snips(),
            "dr": self.utility.dr(),
            "success_snips": self.success.snips(),
            "success_dr": self.success.dr(),
            "mean_price_sat": float(self.target_price_sat.mean()) if n else math.nan,
        }


def greedy_policy_evaluation(
    decisions: Sequence[LoggedDecision],
    p_success: Sequence[np.ndarray],
    *,
    p_reward: Sequence[np.ndarray] | None = None,
    weight_clip: float | None = None,
) -> GreedyPolicyEvaluation:
    """Evaluate the greedy policy of a router from its predictions on logged decisions.

    The target policy picks, among each decision's candidates, the agent ``policy.choose`` picks
    with no exploration (max ``P(success) V - price``; ties: lower price, then position), so the
    decision logic is the router's own. The reward model of the doubly robust estimator is
    ``p_reward`` (default: the same router's predictions ``p_success``):
    ``r_hat(x, a) = p(x, a) - price_a / V`` for the utility and ``p(x, a)`` for success. To
    compare two policies, score both with one common reward model (``paired_policy_evaluation``):
    the doubly robust difference is then exactly 0 on every decision where they pick the same
    agent, and the comparison measures the policies, not their reward models (pass the same
    ``p_reward`` to both). Candidates are those in the routing receipt (the logging policy's best
    ten by utility plus the chosen one), so a target whose favourite was outside them is evaluated
    on its best listed candidate.

    Args:
        decisions: n logged decisions.
        p_success: n arrays, the router's P(success) of each decision's candidates, shape (K_i,).
        p_reward: n arrays of the reward model's P(success), shapes as ``p_success``; None: use
            ``p_success``. It must not have been fitted on these decisions' outcomes.
        weight_clip: cap on the doubly robust importance weights (``PolicyTerms.weight_clip``).

    Raises:
        ValueError: when the lengths differ or a prediction array does not match its candidates.
    """
    if p_reward is None:
        p_reward = p_success
    if len(decisions) != len(p_success) or len(decisions) != len(p_reward):
        raise ValueError(
            f"{len(p_success)} prediction and {len(p_reward)} reward-model arrays for "
            f"{len(decisions)} decisions"
        )
    n = len(decisions)
    target = np.zeros(n, dtype=np.int64)
    price = np.zeros(n)
    match = np.zeros(n)
    utility_hat_logged = np.zeros(n)
    utility_hat_target = np.zeros(n)
    success_hat_logged = np.zeros(n)
    success_hat_target = np.zeros(n)
    for i, (decision, predicted, modelled) in enumerate(
        zip(decisions, p_success, p_reward, strict=True)
    ):
        p = np.asarray(predicted, dtype=np.float64)
        q = np.asarray(modelled, dtype=np.float64)
        prices = np.asarray(decision.prices_sat, dtype=np.float64)
        if p.shape != prices.shape or q.shape != prices.shape:
            raise ValueError(
                f"decision {i}: {p.shape} predictions, {q.shape} reward-model predictions for "
                f"{prices.shape} candidates"
            )
        j = greedy_index(p, prices, decision.value_sat)
        r_hat = normalized_utility(q, prices, decision.value_sat)
        target[i] = j
        price[i] = prices[j]
        match[i] = float(j == decision.chosen)
        utility_hat_logged[i] = r_hat[decision.chosen]
        utility_hat_target[i] = r_hat[j]
        success_hat_logged[i] = q[decision.chosen]
        success_hat_target[i] = q[j]
    success = np.array([d.success for d in decisions], dtype=np.float64)
    logged_price = np.array([d.prices_sat[d.chosen] for d in decisions], dtype=np.float64)
    value = np.array([d.value_sat for d in decisions], dtype=np.float64)
    propensity = np.array([d.propensity for d in decisions], dtype=np.float64)
    return GreedyPolicyEvaluation(
        utility=PolicyTerms(
            rewards=normalized_utility(success, logged_price, value),
            propensities=propensity,
            target_probabilities=match,
            reward_hat_logged=utility_hat_logged,
            reward_hat_target=utility_hat_target,
            weight_clip=weight_clip,
        ),
        success=PolicyTerms(
            rewards=success,
            propensities=propensity,
            target_probabilities=match,
            reward_hat_logged=success_hat_logged,
            reward_hat_target=success_hat_target,
            weight_clip=weight_clip,
        ),
        target_index=target,
        target_price_sat=price,
    )


def logging_policy_summary(decisions: Sequence[LoggedDecision]) -> dict[str, float]:
    """Return the logging policy's own (on-policy, exact) ``n, value`` (mean normalised utility),
    ``success_rate`` and ``mean_price_sat`` on the decisions; nan when there are none."""
    if not decisions:
        return {"n": 0.0, "value": math.nan, "success_rate": math.nan, "mean_price_sat": math.nan}
    success = np.array([d.success for d in decisions], dtype=np.float64)
    price = np.array([d.prices_sat[d.chosen] for d in decisions], dtype=np.float64)
    value = np.array([d.value_sat for d in decisions], dtype=np.float64)
    return {
        "n": float(len(decisions)),
        "value": float(normalized_utility(success, price, value).mean()),
        "success_rate": float(success.mean()),
        "mean_price_sat": float(price.mean()),
    }


def bootstrap_policy_difference(
    challenger: PolicyTerms,
    champion: PolicyTerms,
    *,
    estimator: str = "dr",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Paired percentile bootstrap of ``estimate(challenger) - estimate(champion)``.

    Both policies are scored on the same resampled decisions (rows drawn with replacement,
    ``numpy.random.default_rng(seed)``), so what they share cancels (Efron & Tibshirani 1993,
    "An Introduction to the Bootstrap", ch. 13). Returns ``(difference, low, high)`` with the
    ``level`` two-sided percentile interval; all nan when there are no rows. Resamples where a
    self-normalised estimate is undefined (no matching row) are left out of the quantiles.

    Raises:
        ValueError: when the two policies were not scored on the same number of rows, on an
            unknown estimator, ``n_boot < 1`` or ``level`` outside (0, 1).
    """
    if challenger.n != champion.n:
        raise ValueError(f"challenger has {challenger.n} rows, champion {champion.n}")
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError("n_boot must be >= 1 and level in (0, 1)")
    point = challenger.estimate(estimator) - champion.estimate(estimator)
    n = challenger.n
    if n == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)
    draws: list[np.ndarray] = []
    if estimator == "dr":
        delta = challenger.dr_terms() - champion.dr_terms()
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        if estimator == "dr":
            draws.append(delta[idx].mean(axis=1))
        else:
            draws.append(
                _resampled(challenger, idx, estimator) - _resampled(champion, idx, estimator)
            )
    means = np.concatenate(draws)
    means = means[np.isfinite(means)]
    if means.size == 0:
        return float(point), math.nan, math.nan
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(point), float(low), float(high)


def _resampled(terms: PolicyTerms, idx: np.ndarray, estimator: str) -> np.ndarray:
    """IPS or SNIPS estimate on each resample (rows of ``idx``), shape (n_resamples,)."""
    weights = (terms.target_probabilities / terms.propensities)[idx]
    weighted = (weights * terms.rewards[idx]).sum(axis=1)
    if estimator == "ips":
        return np.asarray(weighted / idx.shape[1], dtype=np.float64)
    if estimator != "snips":
        raise ValueError(f"unknown estimator {estimator!r}; use 'ips', 'snips' or 'dr'")
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(total > 0, weighted / total, np.nan), dtype=np.float64)


GATE_RULES: tuple[str, ...] = ("guardrail", "non-inferiority", "superiority")
"""The promotion gate's tests of a challenger against the champion (``PromotionGate.rule``)."""


@dataclass(frozen=True)
class PromotionGate:
    """Settings of the promotion gate (``policy_promotion_decision``).

    Attributes:
        rule: ``"guardrail"`` (the default): the challenger, fitted on more data, replaces the
            champion unless the evidence shows a regression: refused iff the one-sided ``level``
            *upper* confidence bound of ``V(challenger) - V(champion)`` is below 0 (worse beyond
            noise) or the point estimate is below ``-margin`` (probably worse by more than the
            margin). This is the "do no harm" guardrail test of online experimentation (Kohavi,
            Tang & Xu 2020, "Trustworthy Online Controlled Experiments", ch. 21: a launch is
            blocked by a statistically significant degradation, not held until an improvement
            is proven). ``"non-inferiority"``: promoted iff the one-sided ``level`` *lower* bound
            is above ``-margin`` (Schumi & Wittes 2011, "Through the looking glass:
            understanding non-inferiority", Trials 12:106); with a few hundred held-out rows
            its interval is wider than any margin, so it still freezes. ``"superiority"``: the
            challenger must be better beyond noise (the lower end of the two-sided ``level``
            interval above 0); on markets other than the one its defaults were tuned on it froze
            the first model (issue #16).
        margin: the non-inferiority margin, in units of the normalised utility
            ``success - price / V`` (so 0.02 is two points of success probability at equal
            price); ignored by ``"superiority"``.
        level: confidence level of the bootstrap bounds.
        n_boot: paired bootstrap resamples.
        weight_clip: cap on the doubly robust importance weights (clipped DR; None: uncapped).
    """

    rule: str = "guardrail"
    margin: float = 0.02
    level: float = 0.95
    n_boot: int = 1000
    weight_clip: float | None = 5.0

    def __post_init__(self) -> None:
        if self.rule not in GATE_RULES:
            raise ValueError(f"rule must be one of {GATE_RULES}, not {self.rule!r}")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError("margin must be in [0, 1)")
        if not 0.5 < self.level < 1.0:
            raise ValueError("level must be in (0.5, 1)")
        if self.n_boot < 1:
            raise ValueError("n_boot must be at least 1")
        if self.weight_clip is not None and self.weight_clip < 1.0:
            raise ValueError("weight_clip must be at least 1")


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a challenger becomes champion, and every figure the decision used.

    Attributes:
        promote: the decision.
        rule: ``"guardrail"``, ``"non-inferiority"`` or ``"policy-bootstrap"`` (the superiority
            test; a champion exists) or ``"first-model"``.
        margin: the margin the estimate or bound was compared with (0 for superiority).
        reason: one human-readable line.
        estimator: off-policy estimator of the policy value (``"dr"``, ``"snips"`` or ``"ips"``).
        n_rows: held-out logged decisions the policies were compared on.
        challenger_value: the challenger's estimated value (mean normalised utility).
        champion_value: the champion's (``policy-bootstrap``) or the logging policy's on-policy
            value (``first-model``, for information); None when unknown.
        difference, low, high: challenger - champion and its two-sided bootstrap interval
            (``policy-bootstrap``; at ``2 * level - 1`` for the one-sided test, whose bound is
            ``low``); None otherwise.
        brier_difference, brier_low, brier_high: held-out Brier(challenger) - Brier(prior) and its
            bootstrap interval (``first-model``); None otherwise.
        level, n_boot, seed: the bootstrap's settings.
    """

    promote: bool
    rule: str
    reason: str
    estimator: str
    n_rows: int
    challenger_value: float | None
    champion_value: float | None
    difference: float | None
    low: float | None
    high: float | None
    brier_difference: float | None
    brier_low: float | None
    brier_high: float | None
    level: float
    n_boot: int
    seed: int
    margin: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """Return the decision as a JSON object (non-finite numbers as None)."""
        return {
            key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in dataclasses.asdict(self).items()
        }


def policy_promotion_decision(
    challenger: PolicyTerms,
    champion: PolicyTerms | None,
    *,
    y_true: np.ndarray | None = None,
    p_challenger: np.ndarray | None = None,
    p_prior: np.ndarray | None = None,
    estimator: str = "dr",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    one_sided: bool = False,
    rule: str = "superiority",
    margin: float = 0.0,
) -> PromotionDecision:
    """Decide whether ``challenger`` replaces ``champion``, on held-out data only.

    With a champion and ``rule="guardrail"`` (the product's default, ``PromotionGate``) the
    challenger is promoted unless the evidence shows a regression: refused iff the one-sided
    ``level`` upper bound of the difference (its ``level`` quantile) is below 0 or the point
    estimate is below ``-margin``. ``low``/``high`` report the two-sided ``2 * level - 1``
    interval, whose upper end is that bound.

    With a champion and ``rule="non-inferiority"`` the challenger is promoted unless it is worse
    than the champion by more than ``margin`` beyond noise: iff the one-sided ``level`` lower bound
    of the paired bootstrap of ``estimate(challenger) - estimate(champion)`` (the ``1 - level``
    quantile) is above ``-margin``. A newer model trained on more data is expected to be better, so
    the burden of proof is on a regression; a challenger worse beyond the margin (a broken model,
    one trained on noise, one that routes everything to the dearest agent) is refused. A challenger
    identical to the champion passes (difference 0 on every resample, above ``-margin``) but changes
    nothing.

    With a champion and ``rule="superiority"`` (rule ``policy-bootstrap``) the question is
    one-sided: is the challenger's policy *better* (H1: ``V(challenger) - V(champion) > 0``; H0: not
    better)? A challenger that is worse and one that is no better are both rejected, so nothing is
    gained by also guarding the upper tail. Promote iff the one-sided ``level`` lower confidence
    bound of the difference, the ``1 - level`` quantile of the paired bootstrap
    (``bootstrap_policy_difference``) of ``estimate(challenger) - estimate(champion)``, is above 0:
    a test of H0 at size ``1 - level`` (5% by default; percentile bootstrap, Efron & Tibshirani
    1993, ch. 13 and 16). ``low`` and ``high`` then report the two-sided ``2 * level - 1`` interval
    (90%), whose lower end is that bound. ``one_sided=False`` (the default) uses the lower end of
    the two-sided ``level`` interval instead: a one-sided test at size ``(1 - level) / 2``, stricter
    than the hypothesis needs; in ``benchmarks/router_quality.py`` (12 seeds) the one-sided test did
    not raise the served version's AIQ, so the stricter default stays. Both ``PolicyTerms`` must
    describe the same held-out logged decisions (ideally built with one common reward model, see
    ``greedy_policy_evaluation``); with none, or with an undefined interval, the champion stays. A
    challenger identical to the champion never passes (its difference is 0 on every resample).

    Without a champion (rule ``first-model``) the status quo is routing without a model (uniform
    random), so the burden of proof is reversed: promote unless the challenger's held-out
    predictions are *worse* than the constant prior ``p_prior`` (the training base rate) beyond
    noise, i.e. iff the lower bound of the bootstrap interval of ``Brier(challenger) -
    Brier(prior)`` (``brier_difference_interval``) is at most 0. With no held-out rows
    (``y_true`` None or empty) nothing contradicts the model and it is promoted. The challenger's
    policy value and the logging policy's on-policy value are recorded for information.

    Args:
        challenger, champion: off-policy terms of the two greedy policies on the same decisions.
        y_true, p_challenger, p_prior: (m,) held-out labels, the challenger's P(success) and the
            prior's, for the first-model rule (ignored when there is a champion).
        estimator: ``"dr"`` (default), ``"snips"`` or ``"ips"``.
        n_boot, level, seed: bootstrap resamples, confidence level, generator seed.
        one_sided: the policy-bootstrap rule's test (see above); the first-model rule always uses
            the two-sided ``level`` interval.
        rule: ``"superiority"`` (the function's historical default), ``"non-inferiority"`` or
            ``"guardrail"``.
        margin: the non-inferiority margin (>= 0), in units of the normalised utility.

    Raises:
        ValueError: as ``bootstrap_policy_difference``.
    """
    if rule not in GATE_RULES:
        raise ValueError(f"rule must be one of {GATE_RULES}, not {rule!r}")
    if not margin >= 0.0:
        raise ValueError("margin must be non-negative")
    if champion is not None and rule != "superiority":
        return _margin_decision(
            challenger,
            champion,
            rule=rule,
            estimator=estimator,
            n_boot=n_boot,
            level=level,
            seed=seed,
            margin=margin,
        )
    base = PromotionDecision(
        promote=False,
        rule="first-model" if champion is None else "policy-bootstrap",
        reason="",
        estimator=estimator,
        n_rows=challenger.n,
        challenger_value=_finite_or_none(challenger.estimate(estimator)),
        champion_value=None,
        difference=None,
        low=None,
        high=None,
        brier_difference=None,
        brier_low=None,
        brier_high=None,
        level=level,
        n_boot=n_boot,
        seed=seed,
    )
    if champion is None:
        if challenger.n:
            base = dataclasses.replace(
                base, champion_value=_finite_or_none(float(challenger.rewards.mean()))
            )
        if y_true is None or p_challenger is None or p_prior is None or len(y_true) == 0:
            return dataclasses.replace(
                base, promote=True, reason="first model, no held-out rows to judge it: promoted"
            )
        diff, low, high = brier_difference_interval(
            y_true, p_prior, p_challenger, n_boot=n_boot, level=level, seed=seed
        )
        promote = low <= 0.0
        return dataclasses.replace(
            base,
            promote=promote,
            reason=(
                f"first model: held-out Brier minus the prior's {diff:+.4f}, "
                f"{level:.0%} interval [{low:+.4f}, {high:+.4f}] over {len(y_true)} rows: "
                + ("not worse beyond noise, promoted" if promote else "worse, kept out")
            ),
            brier_difference=diff,
            brier_low=low,
            brier_high=high,
        )
    interval = 2.0 * level - 1.0 if one_sided else level
    if not 0.0 < interval < 1.0:
        raise ValueError("a one-sided level must be in (0.5, 1)")
    diff, low, high = bootstrap_policy_difference(
        challenger, champion, estimator=estimator, n_boot=n_boot, level=interval, seed=seed
    )
    promote = math.isfinite(low) and low > 0.0
    bound = f"one-sided {level:.0%} lower bound" if one_sided else "lower bound"
    if challenger.n == 0:
        reason = "no held-out logged decisions to compare the policies on: champion kept"
    elif not math.isfinite(low):
        reason = f"{estimator} difference undefined on {challenger.n} rows: champion kept"
    else:
        reason = (
            f"{estimator} policy value difference {diff:+.4f}, {interval:.0%} interval "
            f"[{low:+.4f}, {high:+.4f}] over {challenger.n} held-out decisions: "
            + (f"{bound} > 0, promoted" if promote else "not better beyond noise, champion kept")
        )
    return dataclasses.replace(
        base,
        promote=promote,
        reason=reason,
        champion_value=_finite_or_none(champion.estimate(estimator)),
        difference=_finite_or_none(diff),
        low=_finite_or_none(low),
        high=_finite_or_none(high),
    )


def _margin_decision(
    challenger: PolicyTerms,
    champion: PolicyTerms,
    *,
    rule: str,
    estimator: str,
    n_boot: int,
    level: float,
    seed: int,
    margin: float,
) -> PromotionDecision:
    """The guardrail and non-inferiority tests of ``policy_promotion_decision``;
    ``low``/``high`` report the two-sided ``2 * level - 1`` interval, whose ends are the one-sided
    ``level`` bounds."""
    diff, low, high = bootstrap_policy_difference(
        challenger, champion, estimator=estimator, n_boot=n_boot, level=2.0 * level - 1.0, seed=seed
    )
    defined = challenger.n > 0 and math.isfinite(low) and math.isfinite(high)
    if rule == "guardrail":
        promote = defined and high >= 0.0 and diff >= -margin
        verdict = (
            "no regression shown, promoted"
            if promote
            else (
                f"worse beyond noise (one-sided {level:.0%} upper bound < 0), champion kept"
                if high < 0.0
                else f"estimated worse than the margin {margin:.4f}, champion kept"
            )
        )
    else:
        promote = defined and low > -margin
        verdict = (
            "not worse beyond the margin, promoted"
            if promote
            else "worse than the champion beyond the margin, champion kept"
        )
    if challenger.n == 0:
        reason = "no held-out logged decisions to compare the policies on: champion kept"
    elif not defined:
        reason = f"{estimator} difference undefined on {challenger.n} rows: champion kept"
    else:
        reason = (
            f"{rule}: {estimator} policy value difference {diff:+.4f}, one-sided {level:.0%} "
            f"bounds [{low:+.4f}, {high:+.4f}] over {challenger.n} held-out decisions, margin "
            f"{margin:.4f}: {verdict}"
        )
    return PromotionDecision(
        promote=promote,
        rule=rule,
        reason=reason,
        estimator=estimator,
        n_rows=challenger.n,
        challenger_value=_finite_or_none(challenger.estimate(estimator)),
        champion_value=_finite_or_none(champion.estimate(estimator)),
        difference=_finite_or_none(diff),
        low=_finite_or_none(low),
        high=_finite_or_none(high),
        brier_difference=None,
        brier_low=None,
        brier_high=None,
        level=level,
        n_boot=n_boot,
        seed=seed,
        margin=margin,
    )


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


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
