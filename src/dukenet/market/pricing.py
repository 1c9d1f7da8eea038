"""The seed price formula (DESIGN.md, "Formulas")."""

from __future__ import annotations

import numpy as np

MIN_COMPLEXITY = 1
MAX_COMPLEXITY = 10


MULTIPLIER_SCALE = 100  # multipliers are exact to 0.01


def _multiplier_hundredths(multiplier: float) -> int:
    hundredths = round(multiplier * MULTIPLIER_SCALE)
    if hundredths <= 0 or abs(hundredths - multiplier * MULTIPLIER_SCALE) > 1e-6:
        raise ValueError(f"multiplier {multiplier} must be positive with at most two decimals")
    return hundredths


def task_price_sat(base_price_sat: int, complexity: int, reputation_multiplier: float) -> int:
    """Return ``base_price_sat × complexity × reputation_multiplier`` rounded half-up to whole sat.

    Integer arithmetic on the multiplier in hundredths (the seed tiers 1.2/1.5/1.8/2.0 are exact),
    so no float touches the price.

    Raises:
        ValueError: complexity outside 1..10, a non-positive base price, or a multiplier that is
            not positive with at most two decimals.
    """
    if not MIN_COMPLEXITY <= complexity <= MAX_COMPLEXITY:
        raise ValueError(f"complexity must be in {MIN_COMPLEXITY}..{MAX_COMPLEXITY}")
    if base_price_sat <= 0:
        raise ValueError("base price must be positive")
    hundredths = _multiplier_hundredths(reputation_multiplier)
    return (base_price_sat * complexity * hundredths + MULTIPLIER_SCALE // 2) // MULTIPLIER_SCALE


def task_prices_sat(
    base_prices_sat: np.ndarray, complexity: int, multipliers: np.ndarray
) -> np.ndarray:
    """Vectorised ``task_price_sat``: (n,) int64 base prices and (n,) multipliers → (n,) int64.

    Raises:
        ValueError: as ``task_price_sat``; or a price would overflow int64.
    """
    if not MIN_COMPLEXITY <= complexity <= MAX_COMPLEXITY:
        raise ValueError(f"complexity must be in {MIN_COMPLEXITY}..{MAX_COMPLEXITY}")
    hundredths = np.rint(multipliers * MULTIPLIER_SCALE).astype(np.int64)
    if (hundredths <= 0).any() or (
        np.abs(hundredths - multipliers * MULTIPLIER_SCALE) > 1e-6
    ).any():
        raise ValueError("multipliers must be positive with at most two decimals")
    if (base_prices_sat <= 0).any():
        raise ValueError("base prices must be positive")
    if int(base_prices_sat.max()) * complexity * int(hundredths.max()) >= 2**62:
        raise ValueError("price overflows 64-bit satoshis")
    scaled = base_prices_sat.astype(np.int64) * complexity * hundredths
    prices: np.ndarray = (scaled + MULTIPLIER_SCALE // 2) // MULTIPLIER_SCALE
    return prices


def usd_to_sat(usd: float, rate_sat_per_usd: float) -> int:
    """Convert a USD amount to whole satoshis at ``rate_sat_per_usd``, at least 1 sat."""
    return max(1, round(usd * rate_sat_per_usd))


def fee_sat(amount_sat: int, fee_bps: int) -> int:
    """Return the platform fee on ``amount_sat`` at ``fee_bps`` basis points, rounded down."""
    return amount_sat * fee_bps // 10_000
