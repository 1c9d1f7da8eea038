"""Chaos under load (``benchmarks/chaos.py`` with small numbers): API processes, runners and the
trainer killed with SIGKILL at random moments while buyers submit tasks, on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.chaos import ChaosConfig, run_chaos

from tests.conftest import BACKENDS, POSTGRES_URL


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif("postgres" not in BACKENDS, reason="needs the PostgreSQL server")
def test_no_task_is_lost_or_paid_twice_when_processes_are_killed(tmp_path: Path) -> None:
    config = ChaosConfig(
        tasks=40, apis=2, runners=2, kills=4, seed=7, postgres_url=POSTGRES_URL, work_dir=tmp_path
    )
    counts = run_chaos(config)
    print(json.dumps(counts, indent=2))
    assert counts["kills"] >= config.kills
    assert counts["tasks"] == counts["submitted"] == config.tasks  # one task per key
    assert counts["lost"] == 0, counts
    assert counts["double_paid"] == 0, counts
    assert counts["unsettled"] == 0, counts
    assert counts["completed_unpaid"] == 0, counts
    assert set(counts["statuses"]) <= {"completed", "failed"}, counts
    assert counts["ledger_ok"] is True
    trainer = counts["trainer"]
    if trainer["killed"]:  # the trainer was caught mid-run
        assert trainer["run_status"] == "failed", trainer
        assert trainer["run_made_a_version"] is False, trainer
