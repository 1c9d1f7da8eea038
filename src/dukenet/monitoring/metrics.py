"""Prometheus metrics on a per-app registry (no global default registry)."""

from __future__ import annotations

import math
import time
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LEDGER_CHECK_INTERVAL_S = 60.0
"""A process recomputes the ledger's balances from its entries (a full scan) at most this often
for ``/metrics``, in seconds; scrapes in between repeat the last result."""


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
        self.gateway_first_chunk_seconds = Histogram(
            "dukenet_gateway_first_chunk_seconds",
            "Time from a streaming /v1 call's arrival to its first chunk with content, seconds.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
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

        # What an operator is woken for (deploy/prometheus/alerts.yaml), also read from the
        # database at scrape time.
        self.ledger_check_ok = Gauge(
            "dukenet_ledger_check_ok",
            "1 if every cached balance equals the sum of its entries and every transaction "
            "balances (the ledger check), else 0.",
            registry=self.registry,
        )
        self.ledger_discrepancies = Gauge(
            "dukenet_ledger_discrepancies",
            "Accounts whose cached balance differs from their entries, plus unbalanced "
            "transactions, at the last ledger check.",
            registry=self.registry,
        )
        self.ledger_checked_at = Gauge(
            "dukenet_ledger_check_timestamp_seconds",
            "Unix time of this process's last ledger check, seconds.",
            registry=self.registry,
        )
        self.outcomes = Gauge(
            "dukenet_outcomes",
            "Recorded outcomes by success (true or false), all processes.",
            ["success"],
            registry=self.registry,
        )
        self.recent_success_rate = Gauge(
            "dukenet_recent_success_rate",
            "Share of successes among the most recent outcomes (DUKENET_SUCCESS_DROP_WINDOW of "
            "them; NaN before the first).",
            registry=self.registry,
        )
        self.recent_outcomes = Gauge(
            "dukenet_recent_outcomes",
            "Outcomes in the recent success rate's window (at most DUKENET_SUCCESS_DROP_WINDOW).",
            registry=self.registry,
        )
        self.training_runs = Gauge(
            "dukenet_training_runs",
            "Training runs by status (running, succeeded, failed); hyperparameter studies "
            "excluded.",
            ["status"],
            registry=self.registry,
        )
        self.training_failures = Gauge(
            "dukenet_training_consecutive_failures",
            "Training runs that failed since the last one that succeeded.",
            registry=self.registry,
        )
        self.training_succeeded_at = Gauge(
            "dukenet_training_last_success_timestamp_seconds",
            "Unix time the last successful training run finished (0: never), seconds.",
            registry=self.registry,
        )
        self.queue_age = Gauge(
            "dukenet_oldest_queued_task_age_seconds",
            "How long the longest-waiting claimable assigned task has waited for a claim, by "
            "its agent's kind (0: none waiting), seconds.",
            ["agent_kind"],
            registry=self.registry,
        )
        self.expired_leases = Gauge(
            "dukenet_expired_leases",
            "Executing tasks whose lease has expired (their runner stopped heartbeating and no "
            "sweeper has returned them to the queue yet), by agent kind.",
            ["agent_kind"],
            registry=self.registry,
        )
        self.heartbeat_age = Gauge(
            "dukenet_runner_heartbeat_age_seconds",
            "Longest time since the runner of an executing task took or renewed its lease "
            "(DUKENET_LEASE_S minus the lease left), by agent kind (0: none executing), seconds.",
            ["agent_kind"],
            registry=self.registry,
        )
        self._ledger_checked_monotonic: float | None = None

    def ledger_check_due(self) -> bool:
        """Return True if this process has not checked the ledger in the last
        ``LEDGER_CHECK_INTERVAL_S`` seconds (and note that it is checking now)."""
        now = time.monotonic()
        last = self._ledger_checked_monotonic
        if last is not None and now - last < LEDGER_CHECK_INTERVAL_S:
            return False
        self._ledger_checked_monotonic = now
        return True

    def set_totals(
        self,
        *,
        tasks_by_status: dict[str, int],
        moved_sat: dict[str, int],
        active_agents: int,
        now: datetime,
        ledger: tuple[int, int] | None = None,
        outcomes: tuple[int, int] = (0, 0),
        recent_outcomes: tuple[int, int] = (0, 0),
        training_runs: dict[str, int] | None = None,
        training_failures: int = 0,
        training_succeeded_at: datetime | None = None,
        oldest_claimable: dict[str, datetime] | None = None,
        leases: dict[str, tuple[int, datetime]] | None = None,
        lease_s: float = 60.0,
    ) -> None:
        """Set the database-wide gauges (statuses and kinds absent from the maps read 0).

        ``outcomes`` and ``recent_outcomes`` are (outcomes, successes); ``ledger`` is (accounts
        whose balance differs from their entries, unbalanced transactions), None keeps the last
        ledger check's gauges; ``leases`` maps an agent kind to (expired leases, the
        earliest lease expiry); ``lease_s`` is the lease a heartbeat grants, seconds.
        """
        self._set_labelled(self.tasks, tasks_by_status)
        self._set_labelled(self.ledger_moved_sat, moved_sat)
        self.active_agents.set(active_agents)
        if ledger is not None:
            self.ledger_check_ok.set(0 if any(ledger) else 1)
            self.ledger_discrepancies.set(sum(ledger))
            self.ledger_checked_at.set(now.timestamp())
        total, successes = outcomes
        self._set_labelled(self.outcomes, {"true": successes, "false": total - successes})
        window, recent_successes = recent_outcomes
        self.recent_outcomes.set(window)
        self.recent_success_rate.set(recent_successes / window if window else math.nan)
        self._set_labelled(self.training_runs, training_runs or {})
        self.training_failures.set(training_failures)
        self.training_succeeded_at.set(
            0 if training_succeeded_at is None else training_succeeded_at.timestamp()
        )
        self._set_labelled(
            self.queue_age,
            {
                kind: max(0.0, (now - since).total_seconds())
                for kind, since in (oldest_claimable or {}).items()
            },
        )
        leases = leases or {}
        self._set_labelled(self.expired_leases, {kind: n for kind, (n, _) in leases.items()})
        self._set_labelled(
            self.heartbeat_age,
            {
                kind: max(0.0, lease_s - (earliest - now).total_seconds())
                for kind, (_, earliest) in leases.items()
            },
        )

    def _set_labelled(self, gauge: Gauge, values: dict[str, int] | dict[str, float]) -> None:
        """Set a one-label gauge from ``values``; label values seen before and absent now read 0."""
        for label in set(values) | {v for (v,) in self._label_sets(gauge)}:
            gauge.labels(label).set(values.get(label, 0))

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
