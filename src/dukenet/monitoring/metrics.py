"""Prometheus metrics on a per-app registry (no global default registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The counters and histograms one process exports at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dukenet_http_requests_total",
            "HTTP requests by method, route and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.task_transitions = Counter(
            "dukenet_task_transitions_total",
            "Task state transitions by new status.",
            ["status"],
            registry=self.registry,
        )
        self.routing_seconds = Histogram(
            "dukenet_routing_seconds",
            "Time to route one task (model inference and policy), seconds.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
            registry=self.registry,
        )
        self.settled_sat = Counter(
            "dukenet_settled_sat_total",
            "Satoshis settled out of escrow, by direction (release or refund).",
            ["direction"],
            registry=self.registry,
        )

        # Marketplace-wide figures read from the database at scrape time, so that they include
        # what other processes (stand-alone runners, sweepers) did.
        self.tasks = Gauge(
            "dukenet_tasks",
            "Tasks in the database by current status.",
            ["status"],
            registry=self.registry,
        )
        self.ledger_moved_sat = Gauge(
            "dukenet_ledger_moved_sat",
            "Satoshis moved by ledger transactions of each kind since the start (all processes).",
            ["kind"],
            registry=self.registry,
        )
        self.active_agents = Gauge(
            "dukenet_active_agents", "Agents enabled on the market.", registry=self.registry
        )

    def set_totals(
        self, *, tasks_by_status: dict[str, int], moved_sat: dict[str, int], active_agents: int
    ) -> None:
        """Set the database-wide gauges (statuses and kinds absent from the maps read 0)."""
        for status in set(tasks_by_status) | {s for (s,) in self._label_sets(self.tasks)}:
            self.tasks.labels(status).set(tasks_by_status.get(status, 0))
        for kind in set(moved_sat) | {k for (k,) in self._label_sets(self.ledger_moved_sat)}:
            self.ledger_moved_sat.labels(kind).set(moved_sat.get(kind, 0))
        self.active_agents.set(active_agents)

    @staticmethod
    def _label_sets(gauge: Gauge) -> list[tuple[str, ...]]:
        return [
            tuple(sample.labels[name] for name in sorted(sample.labels))
            for metric in gauge.collect()
            for sample in metric.samples
        ]

    def render(self) -> bytes:
        """Return the exposition text of every metric."""
        return generate_latest(self.registry)
