"""The seed price formula: ``price = base × complexity × reputation multiplier``, in whole sat."""

from __future__ import annotations

import pytest

from dukenet.market.pricing import fee_sat, task_price_sat, usd_to_sat
from dukenet.market.reputation import BASE_MULTIPLIER, REPUTATION_TIERS

MULTIPLIERS = [m for _, m in REPUTATION_TIERS] + [BASE_MULTIPLIER]


class TestTaskPrice:
    @pytest.mark.parametrize(
        ("base", "complexity", "multiplier", "price"),
        [
            (1_000, 3, 1.2, 3_600),
            (1_000, 7, 1.5, 10_500),
            (1_000, 7, 1.8, 12_600),
            (100_000, 10, 2.0, 2_000_000),
            (100_000, 1, 1.2, 120_000),
            (333, 3, 1.8, 1_798),  # 1,798.2 rounds down
            (1, 1, 1.2, 1),  # 1.2 rounds down
        ],
    )
    def test_price_is_base_times_complexity_times_multiplier(
        self, base: int, complexity: int, multiplier: float, price: int
    ) -> None:
        assert task_price_sat(base, complexity, multiplier) == price

    def test_exact_decimal_arithmetic_rounds_half_up(self) -> None:
        # 5 × 1.5 = 7.5 and 3 × 1.5 = 4.5: half-up gives 8 and 5 (banker's rounding gives 8 and 4).
        assert task_price_sat(5, 1, 1.5) == 8
        assert task_price_sat(3, 1, 1.5) == 5
        # 1.8 is taken as exactly 1.8, not its binary approximation 1.8000000000000000444...
        assert task_price_sat(25, 1, 1.8) == 45
        assert task_price_sat(10**12, 10, 1.8) == 18 * 10**12

    def test_every_tier_and_complexity_is_the_product(self) -> None:
        for multiplier in MULTIPLIERS:
            for complexity in range(1, 11):
                expected = 100_000 * complexity * round(multiplier * 10) // 10
                assert task_price_sat(100_000, complexity, multiplier) == expected

    @pytest.mark.parametrize(
        ("base", "complexity", "multiplier"),
        [(1_000, 0, 1.2), (1_000, 11, 1.2), (0, 3, 1.2), (-5, 3, 1.2), (1_000, 3, 0.0)],
    )
    def test_out_of_range_inputs_are_refused(
        self, base: int, complexity: int, multiplier: float
    ) -> None:
        with pytest.raises(ValueError, match=r"complexity must be in 1\.\.10|must be positive"):
            task_price_sat(base, complexity, multiplier)


class TestFees:
    def test_fee_is_rounded_down_basis_points(self) -> None:
        assert fee_sat(3_600, 250) == 90
        assert fee_sat(1_001, 333) == 33
        assert fee_sat(39, 250) == 0
        assert fee_sat(3_600, 0) == 0
        assert fee_sat(3_600, 10_000) == 3_600

    def test_usd_converts_to_at_least_one_sat(self) -> None:
        assert usd_to_sat(0.0015, 1e7) == 15_000
        assert usd_to_sat(0.0, 1e7) == 1
        assert usd_to_sat(1e-12, 1e7) == 1
