"""Prometheus metrics on a per-app registry (no global default registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


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

    def render(self) -> bytes:
        """Return the exposition text of every metric."""
        return generate_latest(self.registry)
