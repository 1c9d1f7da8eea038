"""Replay of recorded-outcomes datasets: the long format (``dataset``) and the market driver
(``market``) behind ``dukenet replay`` and ``dukenet demo``."""

from enum import StrEnum


class Complexity(StrEnum):
    """Where a replayed task's complexity comes from (see ``dukenet.replay.market``)."""

    DATASET = "dataset"
    TEXT = "text"
    COST = "cost"
