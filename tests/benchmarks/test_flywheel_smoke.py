"""``benchmarks/flywheel.py --smoke`` end to end (tiny random model, CPU): real MMLU-Pro answers
go through the market, the evaluator's labels make SFT and DPO exports, both fine-tunes are
registered as local agents, and every held-out figure is reported within its range."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "flywheel.py"


def test_the_smoke_flywheel_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "flywheel"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--json", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report == json.loads((out / "report.json").read_text())
    market = report["market"]
    assert market["questions"] == 24 and market["tasks"] == 24 * 3
    assert sum(market["choices"].values()) == market["tasks"]
    assert market["evaluator_agreement_with_mmlu_pro"] > 0.9  # the choice evaluator is sound
    exports = report["exports"]
    assert exports["rows"]["router"] == market["tasks"]  # one router row per outcome
    for kind in ("sft", "dpo"):
        assert exports["train"][kind] > 0 and exports["heldout"][kind] > 0
        assert exports["train"][kind] + exports["heldout"][kind] == exports["rows"][kind]
    for tune in report["finetune"].values():
        assert tune["steps"] == 2 and tune["seconds_per_step"] > 0 and tune["agent_id"]
    scores = report["scores"]
    assert set(scores) == {"base", "sft", "dpo"}
    assert "implicit_reward_accuracy" not in scores["base"]  # the base is its own reference
    for name in ("sft", "dpo"):
        accuracy = scores[name]["implicit_reward_accuracy"]["accuracy"]
        assert 0.0 <= accuracy["low"] <= accuracy["estimate"] <= accuracy["high"] <= 1.0
        assert accuracy["n"] == exports["heldout"]["dpo"]
    for entry in scores.values():
        mc = entry["multiple_choice"]
        assert mc["accuracy"]["n"] == 8 and 0.1 <= mc["chance"] <= 0.5
        assert sum(mc["chosen_letters"]["counts"].values()) == 8
        assert (
            0.0 <= mc["chosen_letters"]["entropy_bits"] <= mc["chosen_letters"]["max_entropy_bits"]
        )
        assert entry["heldout_loss"]["nll"]["estimate"] > 0
