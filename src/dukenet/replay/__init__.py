"""Replay of recorded-outcomes datasets: the long format (``dataset``) and the market driver
(``market``) behind ``dukenet replay`` and ``dukenet demo``."""

from enum import StrEnum


class Complexity(StrEnum):
    """Where a replayed task's complexity comes from (see ``dukenet.replay.market``)."""

    DATASET = "dataset"
    TEXT = "text"
    COST = "cost"
    """Derived from the recorded costs: the same as ``Pricing.RECORDED_COST``."""


class Pricing(StrEnum):
    """How replayed tasks are priced (see ``dukenet.replay.market``).

    ``COMPLEXITY``: price = the agent's mean recorded cost × the task's complexity (``Complexity``)
    × reputation; ``RECORDED_COST``: price = the agent's mean recorded cost × how much dearer than
    usual the task's recorded calls were (their mean ratio to each agent's mean cost, in steps of
    1/4 from 1/4 to 10/4) × reputation, so that a task's price follows its recorded cost.
    """

    COMPLEXITY = "complexity"
    RECORDED_COST = "recorded-cost"


class BuiltinDataset(StrEnum):
    """The recorded-outcomes datasets shipped in the package (``dukenet demo --dataset``)."""

    ROUTERBENCH = "routerbench"
    MMLU_PRO = "mmlu-pro"
