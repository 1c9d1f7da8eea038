"""The dataset tests run in the labelling tests' market (a buyer, an operator with one agent,
an admin) with a one-hour dispute window."""

from tests.feedback.test_labels import market, settings

__all__ = ["market", "settings"]
