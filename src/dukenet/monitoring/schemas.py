"""API schemas of monitoring."""

from __future__ import annotations

from dukenet.kit.schema import Schema


class SystemMetricsRead(Schema):
    """Marketplace totals for the admin dashboard and ``dukenet admin metrics``.

    ``success_rate``: successful / all recorded outcomes (None before the first).
    ``satoshis_transacted``: satoshis paid out of escrow to agents (and fees), refunds excluded.
    ``training_samples``: outcomes Duke can learn from; ``production_model_version`` the champion
    routing live traffic and ``production_model_samples`` the outcomes it was trained on.
    """

    tasks_by_status: dict[str, int]
    tasks: int
    users: int
    users_by_role: dict[str, int]
    active_agents: int
    outcomes: int
    success_rate: float | None
    satoshis_transacted: int
    training_samples: int
    production_model_version: int | None
    production_model_samples: int | None
