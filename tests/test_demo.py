"""The main job, on a subset: it runs end to end through the HTTP API, writes its report and
plot, and a second run with the same seed reproduces the report exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from dukenet.demo import DemoConfig, DemoDataset, _served, format_report, run_demo, served_curve

pytestmark = pytest.mark.slow


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    keep = ("references", "versions", "target", "train_prompts", "test_prompts")
    return {k: report[k] for k in keep}


def test_demo_is_reproducible_and_reports_every_version(tmp_path: Path) -> None:
    config = DemoConfig(out=tmp_path / "a", seed=3, limit=200, test_limit=120, quiet=True)
    first = run_demo(config)
    second = run_demo(DemoConfig(out=tmp_path / "b", seed=3, limit=200, test_limit=120, quiet=True))
    assert _comparable(first) == _comparable(second)

    on_disk = json.loads((tmp_path / "a" / "report.json").read_text())
    assert on_disk["versions"] == first["versions"]
    assert (tmp_path / "a" / "learning_curve.png").stat().st_size > 10_000
    assert [v["version"] for v in first["versions"]] == [1, 2]
    assert [v["outcomes_seen"] for v in first["versions"]] == [100, 200]
    for v in first["versions"]:
        assert set(v) >= {"version", "outcomes_seen", "auc", "success_rate", "cost_per_1k_usd"}
        assert 0 <= v["success_rate"] <= 1
    refs = first["references"]
    assert {"random", "oracle", "gpt-4-1106-preview"} <= set(refs)
    assert refs["oracle"]["success_rate"] >= max(r["success_rate"] for r in refs.values())
    assert first["market"]["ledger_ok"] is True
    assert first["market"]["system"]["outcomes"] == 200
    replay = first["market"]["replay"]
    assert sum(replay["statuses"].values()) == 200 and replay["unrecorded"] == 0
    assert replay["without_record"] == {}
    assert replay["price_to_cost"] > 1  # text complexity prices above the recorded cost
    assert "Duke v1" in format_report(first)
    assert first["dataset"] == "routerbench" and first["agents"] == 11
    assert first["served"] == served_curve(first["versions"])


def test_the_demo_on_mmlu_pro(tmp_path: Path) -> None:
    config = DemoConfig(
        dataset=DemoDataset.MMLU_PRO, out=tmp_path, seed=0, limit=100, test_limit=60, quiet=True
    )
    report = run_demo(config)
    assert report["dataset"] == "mmlu-pro" and report["agents"] == 31
    assert report["train_prompts"] == 100 and report["test_prompts"] == 60
    assert [v["outcomes_seen"] for v in report["versions"]] == [100]
    refs = report["references"]
    assert {"gpt-4o", "gemini-1.5-flash-002", "random", "oracle"} <= set(refs)
    roles = report["reference_policies"]
    best, cheap = refs[roles["best_single_agent"]], refs[roles["cheapest_good_agent"]]
    assert cheap["cost_per_1k_usd"] <= best["cost_per_1k_usd"]
    assert cheap["success_rate"] >= best["success_rate"] - roles["good_agent_margin"]
    assert report["market"]["replay"]["unrecorded"] == 0
    assert report["market"]["ledger_ok"] is True
    assert (tmp_path / "learning_curve.png").stat().st_size > 10_000
    assert "mmlu-pro: 100 train tasks" in format_report(report)


def test_the_served_curve_names_the_champion_after_each_retraining() -> None:
    versions = [
        {"version": 1, "outcomes_seen": 100, "promoted": False, "success_rate": 0.5},
        {"version": 2, "outcomes_seen": 200, "promoted": True, "success_rate": 0.7},
        {"version": 3, "outcomes_seen": 300, "promoted": False, "success_rate": 0.9},
    ]
    for v in versions:
        v["cost_per_1k_usd"] = v["version"] / 10
    assert served_curve(versions) == [
        {"outcomes_seen": 100, "version": None, "success_rate": None, "cost_per_1k_usd": None},
        {"outcomes_seen": 200, "version": 2, "success_rate": 0.7, "cost_per_1k_usd": 0.2},
        {"outcomes_seen": 300, "version": 2, "success_rate": 0.7, "cost_per_1k_usd": 0.2},
    ]


def test_a_different_seed_changes_the_run(tmp_path: Path) -> None:
    a = run_demo(DemoConfig(out=tmp_path / "a", seed=1, limit=100, test_limit=50, quiet=True))
    b = run_demo(DemoConfig(out=tmp_path / "b", seed=2, limit=100, test_limit=50, quiet=True))
    assert a["versions"] != b["versions"]


def test_the_served_line_follows_the_last_promoted_version() -> None:
    versions = [
        {"promoted": False, "success_rate": 0.5},
        {"promoted": True, "success_rate": 0.7},
        {"promoted": False, "success_rate": 0.9},
        {"promoted": True, "success_rate": 0.8},
    ]
    served = _served(versions, "success_rate")
    assert math.isnan(served[0])
    assert served[1:] == [0.7, 0.7, 0.8]
