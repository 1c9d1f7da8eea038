"""The seed price formula (DESIGN.md, "Formulas")."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MIN_COMPLEXITY = 1
MAX_COMPLEXITY = 10


def task_price_sat(base_price_sat: int, complexity: int, reputation_multiplier: float) -> int:
    """Return ``base_price_sat × complexity × reputation_multiplier`` rounded half-up to whole sat.

    Decimal arithmetic on the multiplier's shortest decimal form, so 1.8 means exactly 1.8.

    Raises:
        ValueError: complexity outside 1..10, a non-positive base price or multiplier.
    """
    if not MIN_COMPLEXITY <= complexity <= MAX_COMPLEXITY:
        raise ValueError(f"complexity must be in {MIN_COMPLEXITY}..{MAX_COMPLEXITY}")
    if base_price_sat <= 0 or reputation_multiplier <= 0:
        raise ValueError("base price and multiplier must be positive")
    exact = Decimal(base_price_sat) * complexity * Decimal(repr(reputation_multiplier))
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def usd_to_sat(usd: float, rate_sat_per_usd: float) -> int:
    """Convert a USD amount to whole satoshis at ``rate_sat_per_usd``, at least 1 sat."""
    return max(1, round(usd * rate_sat_per_usd))


def fee_sat(amount_sat: int, fee_bps: int) -> int:
    """Return the platform fee on ``amount_sat`` at ``fee_bps`` basis points, rounded down."""
    return amount_sat * fee_bps // 10_000
