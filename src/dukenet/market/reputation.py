"""Reputation: a smoothed success rate and the seed specification's price tiers."""

from __future__ import annotations

# (minimum smoothed success rate, multiplier), highest tier first — DESIGN.md "Formulas".
REPUTATION_TIERS: tuple[tuple[float, float], ...] = ((0.95, 2.0), (0.85, 1.8), (0.70, 1.5))
BASE_MULTIPLIER = 1.2


def smoothed_success_rate(
    successes: int, total: int, *, prior_successes: float = 2.0, prior_failures: float = 2.0
) -> float:
    """Return the posterior mean of a Beta(prior_successes, prior_failures) success rate.

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
