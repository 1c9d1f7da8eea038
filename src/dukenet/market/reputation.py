"""Reputation: a smoothed success rate and the seed specification's price tiers."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Protocol

# (minimum smoothed success rate, multiplier), highest tier first — DESIGN.md "Formulas".
REPUTATION_TIERS: tuple[tuple[float, float], ...] = ((0.95, 2.0), (0.85, 1.8), (0.70, 1.5))
BASE_MULTIPLIER = 1.2


def smoothed_success_rate(
    successes: float, total: float, *, prior_successes: float = 2.0, prior_failures: float = 2.0
) -> float:
    """Return the posterior mean of a Beta(prior_successes, prior_failures) success rate
    (counts may be weighted, see :func:`weighted_counts`).

    With the default Beta(2, 2) prior a new agent starts at 0.5 and one lucky task gives 0.6,
    so nobody earns the top tier without a record.

    Raises:
        ValueError: counts are negative or successes exceed total.
    """
    if total < 0 or successes < 0 or successes > total:
        raise ValueError("need 0 <= successes <= total")
    return (successes + prior_successes) / (total + prior_successes + prior_failures)


def reputation_multiplier(success_rate: float) -> float:
    """Map a (smoothed) success rate to its price multiplier: ≥0.95→2.0, ≥0.85→1.8, ≥0.70→1.5,
    else 1.2."""
    for threshold, multiplier in REPUTATION_TIERS:
        if success_rate >= threshold:
            return multiplier
    return BASE_MULTIPLIER


class _Evidence(Protocol):
    @property
    def buyer_id(self) -> uuid.UUID: ...
    @property
    def success(self) -> bool: ...
    @property
    def pinned(self) -> bool: ...


def weighted_counts(
    evidence: Iterable[_Evidence],
    *,
    owner_id: uuid.UUID,
    per_buyer_cap: float,
    pinned_weight: float,
) -> tuple[float, float]:
    """Return (successes, total) weighted against wash trading, for
    :func:`smoothed_success_rate`.

    Each outcome weighs 1, except: a task bought by the agent's own operator weighs 0 (one
    cannot rate oneself); a pinned task (the buyer chose the agent, Duke did not) weighs
    ``pinned_weight``; and a buyer with n outcomes in the window has each of them scaled by
    ``min(1, per_buyer_cap / n)``, so one buyer moves the rate by at most ``per_buyer_cap``
    tasks' worth. With the defaults (cap 5, pinned weight 0.5) one colluding buyer pinning
    and 5-starring an agent 100 times counts as 2.5 successes: Beta(2, 2) gives 4.5/6.5 = 0.69,
    the base tier (1.2x) still; the top tier (0.95) needs 36 weighted successes, i.e. at least
    8 independent buyers routed to the agent, or 15 pinning it.
    """
    rows = list(evidence)
    per_buyer = Counter(e.buyer_id for e in rows)
    successes = total = 0.0
    for e in rows:
        if e.buyer_id == owner_id:
            continue
        weight = min(1.0, per_buyer_cap / per_buyer[e.buyer_id])
        if e.pinned:
            weight *= pinned_weight
        total += weight
        successes += weight if e.success else 0.0
    return successes, total
