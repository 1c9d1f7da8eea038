"""deploy/prometheus/alerts.yaml and deploy/grafana/dukenet.json against the real /metrics: every
expression parses as PromQL, and every metric and label it names is in the exposition of an app
that served a market (tasks settled, one executing, one queued)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dukenet.agents.models import AgentKind
from dukenet.kit.state import AppState
from dukenet.runners.replay import ReplayExecutor
from dukenet.runners.worker import Runner
from dukenet.tasks import service as tasks_service
from tests.deploy.conftest import DEPLOY
from tests.factories import create_admin, credit, register, replay_agent, submit_task

# Series Prometheus makes itself for each scrape target (never in an app's exposition).
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Labels Prometheus attaches to every scraped series (scrape.yaml's job and relabelling).
TARGET_LABELS = {"job", "instance", "pod"}
SEVERITIES = {"page", "ticket"}


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((DEPLOY / "prometheus/alerts.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana/dukenet.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _references(expr: str) -> dict[str, set[str]]:
    """Return each metric an expression selects, with the label names it matches or groups on."""
    found: dict[str, set[str]] = {}
    grouping: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            labels = {m.name for m in node.matchers.matchers if m.name != "__name__"}
            found.setdefault(node.name, set()).update(labels)
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)  # by (...) / without (...)
        if isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            matching = node.modifier.matching  # on (...) / ignoring (...)
            if matching is not None:
                grouping.update(matching.labels)

    promql_parser.walk(promql_parser.parse(expr), visit)
    for labels in found.values():
        labels.update(grouping)
    return found


def missing(exprs: Iterable[str], exposition: str) -> list[str]:
    """Return what the expressions name that the exposition lacks: ``metric`` or
    ``metric{label}`` (Prometheus's own series and target labels excepted)."""
    labels_of: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels_of.setdefault(sample.name, set()).update(sample.labels)
    problems = []
    for expr in exprs:
        for metric, labels in _references(expr).items():
            if metric in SYNTHETIC:
                continue
            if metric not in labels_of:
                problems.append(metric)
                continue
            unknown = labels - labels_of[metric] - TARGET_LABELS - {"le"}
            # a grouping label only has to exist on one of the expression's metrics
            unknown = {
                label
                for label in unknown
                if not any(label in labels_of.get(m, set()) for m in _references(expr))
            }
            problems.extend(f"{metric}{{{label}}}" for label in sorted(unknown))
    return problems


@pytest.fixture
async def exposition(client: httpx.AsyncClient, state: AppState) -> str:
    """/metrics of the test app after a small market ran: two tasks settled by a runner, one
    executing under a lease, one waiting for a claim, one cancelled."""
    state.settings.dispute_window_s = 0.0
    _, admin = await create_admin(state)
    agent = await replay_agent(client, admin)
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**8)
    for _ in range(2):
        assert (await submit_task(client, headers, complexity=2)).status_code == 201
    runner = Runner(state.sessionmaker, state.settings, {AgentKind.REPLAY: ReplayExecutor()})
    while await runner.run_once():
        pass
    for _ in range(3):
        assert (await submit_task(client, headers, complexity=2)).status_code == 201
    async with state.sessionmaker() as session:
        claimed = await tasks_service.claim(
            session, agent_ids=[uuid.UUID(agent["id"])], runner="r", lease_s=30
        )
        assert claimed is not None
        await session.commit()
    tasks = (await client.get("/tasks?status=assigned", headers=headers)).json()["items"]
    cancelled = await client.post(f"/tasks/{tasks[0]['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    response = await client.get("http://test/metrics")
    assert response.status_code == 200
    return response.text


class TestAlertRules:
    def test_every_rule_is_complete(self) -> None:
        rules = _rules()
        assert len(rules) >= 10
        names = [rule["alert"] for rule in rules]
        assert len(names) == len(set(names))
        for rule in rules:
            promql_parser.parse(rule["expr"])
            assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["runbook"]

    def test_the_operator_is_paged_for_what_the_issue_names(self) -> None:
        paged = " ".join(r["expr"] for r in _rules() if r["labels"]["severity"] == "page")
        for metric in (
            "dukenet_ledger_check_ok",
            "dukenet_recent_success_rate",
            "dukenet_training_consecutive_failures",
            "dukenet_oldest_queued_task_age_seconds",
            "dukenet_runner_heartbeat_age_seconds",
        ):
            assert metric in paged, metric

    async def test_every_metric_and_label_is_exported(self, exposition: str) -> None:
        exprs = [rule["expr"] for rule in _rules()]
        assert missing(exprs, exposition) == []


class TestDashboard:
    def test_panels_have_unique_ids_and_parse(self) -> None:
        dashboard = json.loads((DEPLOY / "grafana/dukenet.json").read_text())
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)) and dashboard["uid"]
        for expr in _dashboard_exprs():
            promql_parser.parse(expr)
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}"

    async def test_every_metric_and_label_is_exported(self, exposition: str) -> None:
        assert missing(_dashboard_exprs(), exposition) == []


class TestTheCheckCanFail:
    def test_an_unknown_metric_or_label_is_reported(self) -> None:
        exposition = (
            "# TYPE dukenet_tasks gauge\n"
            'dukenet_tasks{status="assigned"} 1\n'
            "# TYPE dukenet_http_requests_total counter\n"
            'dukenet_http_requests_total{method="GET",route="/x",status="200"} 3\n'
        )
        exprs = [
            "max by (status) (dukenet_tasks)",
            'sum(rate(dukenet_http_requests_total{status=~"5.."}[5m]))',
            "dukenet_no_such_metric > 0",
            'dukenet_tasks{agent_kind="replay"}',
            "sum by (kind) (dukenet_tasks)",
            'up{job="dukenet-api"} == 0',
        ]
        assert missing(exprs, exposition) == [
            "dukenet_no_such_metric",
            "dukenet_tasks{agent_kind}",
            "dukenet_tasks{kind}",
        ]
