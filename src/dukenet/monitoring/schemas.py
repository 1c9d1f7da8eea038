"""API schemas of monitoring."""

from __future__ import annotations

from dukenet.kit.schema import Schema


class SystemMetricsRead(Schema):
    """Marketplace totals for the admin dashboard; money in satoshis."""

    tasks_by_status: dict[str, int]
    users: int
    active_agents: int
    outcomes: int
    success_rate: float | None
    satoshis_transacted: int
    champion_version: int | None
