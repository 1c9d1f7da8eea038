"""The main job: a real marketplace learns to route RouterBench or MMLU-Pro prompts.

It starts the embedded server (``dukenet serve``, SQLite, in a child process) and replays a
dataset's *train* prompts on it with the machinery of ``dukenet replay``
(``dukenet.replay.market.drive`` on the dataset in the long format): the models become
``replay`` agents priced from their mean recorded cost, buyers submit every prompt as a task
through the HTTP API, a runner (the same ``Runner`` that ``dukenet runner`` starts) executes the
assigned tasks from the database order book with a ``ReplayExecutor``, and the server's trainer
retrains Duke every ``retrain_every_n`` outcomes. Task complexity is ``complexity_of(prompt)`` and
the $/1k figures are the recorded USD cost of the chosen model on each prompt (see
``dukenet.replay.market`` for why prices do not use cost-derived complexity here). Each model
version's greedy routing policy is then evaluated on the dataset's *test* prompts with full
information, and so is the version the market served after each retraining (the champion).

Datasets (``DemoDataset``): ``routerbench``, 11 models, all 2,225 train prompts and the 953 test
prompts; ``mmlu-pro``, 31 models, by default 2,000 of its train questions and 500 of its test
questions (subject-stratified subsets of the seeded split, ``dukenet.learning.mmlu_pro``) so that
the run stays within a few minutes on 2 cores.

Tasks go in batches of ``retrain_every_n``: a batch is submitted, executed, and the trainer fires,
before the next batch. With a fixed seed the prompt order, the exploration draws, the held-out split
and the model fits are fixed, so the whole run — and its report — is reproducible.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import UserRole
from dukenet.agents.models import AgentKind
from dukenet.config import Settings
from dukenet.db import create_sessionmaker, engine_for
from dukenet.learning.evaluation import (
    PolicyResult,
    evaluate_full_information,
    oracle_result,
    random_routing_result,
    single_agent_results,
)
from dukenet.learning.features import TaskFeatures
from dukenet.learning.mmlu_pro import load_mmlu_pro, mmlu_pro_outcomes, stratified_order
from dukenet.learning.policy import choose
from dukenet.learning.router import DukeRouter
from dukenet.learning.routerbench import (
    FullInfoTable,
    complexity_of,
    load_routerbench,
    routerbench_outcomes,
)
from dukenet.market.pricing import task_price_sat
from dukenet.market.routing import value_sat
from dukenet.replay import BuiltinDataset, Complexity
from dukenet.replay.dataset import RecordedOutcomes
from dukenet.replay.market import ReplayOptions, drive, login, summarize
from dukenet.runners.replay import ReplayExecutor
from dukenet.runners.worker import Runner

ADMIN_EMAIL = "admin@dukenet-demo.example.com"
BUYER_CREDIT_SAT = 10**13
REPLAY_FIGURES = (
    "statuses",
    "charged_sat",
    "price_to_cost",
    "price_to_cost_quantiles",
    "unrecorded",
    "without_record",
)
SUCCESS_SHARE_TARGET = 0.97
COST_SHARE_TARGET = 0.50
GOOD_AGENT_MARGIN = 0.10
"""The cheapest good agent: the cheapest single agent within this much success of the best."""
MMLU_PRO_TRAIN = 2_000
"""Train questions the MMLU-Pro demo replays by default (of 5,601)."""
MMLU_PRO_TEST = 500
"""Test questions the MMLU-Pro demo scores on by default (of 1,399)."""


DemoDataset = BuiltinDataset
"""Which recorded-outcomes dataset the demo replays."""

DEFAULT_DATASET = DemoDataset.ROUTERBENCH


@dataclass(frozen=True)
class DemoConfig:
    """The dataset, where to write, the seed, optional subsets (for quick runs and tests: ``limit``
    train prompts, ``test_limit`` test prompts; for MMLU-Pro the defaults are ``MMLU_PRO_TRAIN``
    and ``MMLU_PRO_TEST``) and the buyer count."""

    dataset: DemoDataset = DEFAULT_DATASET
    out: Path = Path("var/demo")
    seed: int = 0
    limit: int | None = None
    test_limit: int | None = None
    buyers: int = 4
    retrain_every_n: int = 100
    # The product's exploration (Thompson sampling, floor 0.05, cost cap 1.0); "epsilon" uses the
    # three knobs below instead (benchmarks/router_quality.py compares them across seeds).
    exploration: str = "thompson"
    epsilon: float = 0.3
    explore_top_k: int = 4
    explore_floor: float = 0.05
    quiet: bool = False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_env(config: DemoConfig, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUKENET_")}
    env.update(
        {
            "DUKENET_VAR_DIR": str(config.out),
            "DUKENET_PORT": str(port),
            "DUKENET_JWT_SECRET": secrets.token_urlsafe(32),
            "DUKENET_EMBEDDED_RUNNERS": "0",
            "DUKENET_RETRAIN_EVERY_N": str(config.retrain_every_n),
            "DUKENET_TRAINER_POLL_S": "0.1",
            # Only the outcome-count trigger: the others depend on wall-clock timing, which
            # would make the run irreproducible.
            "DUKENET_RETRAIN_TRIGGERS": '["outcomes"]',
            "DUKENET_ROUTING_SEED": str(config.seed),
            "DUKENET_EXPLORATION": config.exploration,
            "DUKENET_EXPLORATION_EPSILON": str(config.epsilon),
            "DUKENET_EXPLORATION_TOP_K": str(config.explore_top_k),
            "DUKENET_EXPLORATION_FLOOR": str(config.explore_floor),
            "DUKENET_SPLIT_SEED": str(config.seed),
            # Settle at once: no buyer acceptance window in a replay.
            "DUKENET_DISPUTE_WINDOW_S": "0",
            # the embedded demo may call agents on this machine (kit/netguard.py)
            "DUKENET_ALLOWED_AGENT_NETWORKS": "127.0.0.0/8,::1/128",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
    )
    return env


def demo_data(config: DemoConfig) -> tuple[RecordedOutcomes, FullInfoTable]:
    """Return the demo's train tasks (long format; ``config.limit`` applies to RouterBench in the
    replay, to MMLU-Pro here) and its test table (full information, ``config.test_limit``).

    MMLU-Pro: the first ``limit`` (default ``MMLU_PRO_TRAIN``) train questions and the first
    ``test_limit`` (default ``MMLU_PRO_TEST``) test questions of a subject-stratified order of
    the seed-0 split, whatever the demo's seed (the seed orders the replay). RouterBench: the
    train split, and the first ``test_limit`` test prompts.
    """
    if config.dataset is DemoDataset.MMLU_PRO:
        train = mmlu_pro_outcomes("train", limit=config.limit or MMLU_PRO_TRAIN)
        test = load_mmlu_pro("test")
        rows = stratified_order(test.categories)[: config.test_limit or MMLU_PRO_TEST]
        return train, test.subset(np.sort(rows))
    routerbench_test = load_routerbench("test")
    if config.test_limit is not None:
        routerbench_test = routerbench_test.subset(range(config.test_limit))
    return routerbench_outcomes("train"), routerbench_test


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the demo end to end; write ``report.json`` and ``learning_curve.png`` under
    ``config.out`` and return the report (see README for its fields)."""
    train, test = demo_data(config)
    for stale in ("dukenet.db", "dukenet.db-wal", "dukenet.db-shm", "models"):
        path = config.out / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    config.out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = _server_env(config, port)
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "dukenet", "serve"], env=env, stdout=subprocess.DEVNULL
    )
    try:
        market = asyncio.run(_drive_market(config, train, env, f"http://127.0.0.1:{port}", server))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    report = _evaluate(config, test, market)
    report["wall_time_s"] = round(time.perf_counter() - started, 1)
    (config.out / "report.json").write_text(json.dumps(report, indent=2))
    _plot(report, config.out / "learning_curve.png")
    if not config.quiet:
        print(format_report(report))
    return report


async def _wait_for_server(base_url: str, server: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(1800):  # a loaded 2-core machine can take minutes to start it
            if server.poll() is not None:
                raise RuntimeError(f"dukenet serve exited with code {server.returncode}")
            try:
                if (await client.get(f"{base_url}/openapi.json")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("dukenet serve did not start within 180 s")


def _check(response: httpx.Response) -> Any:
    if response.is_error:
        raise RuntimeError(
            f"{response.request.method} {response.request.url}: "
            f"{response.status_code} {response.text}"
        )
    return response.json()


async def _drive_market(
    config: DemoConfig,
    train: RecordedOutcomes,
    env: dict[str, str],
    base_url: str,
    server: subprocess.Popen[bytes],
) -> dict[str, Any]:
    await _wait_for_server(base_url, server)
    settings = Settings(
        var_dir=config.out,
        embedded_runners=0,
        retrain_every_n=config.retrain_every_n,
        routing_seed=config.seed,
        split_seed=config.seed,
        runner_poll_s=0.01,
        dispute_window_s=0.0,
    )
    engine = engine_for(settings)
    sessionmaker = create_sessionmaker(engine)
    admin_password = secrets.token_urlsafe(16)
    async with sessionmaker() as session:
        await accounts_service.register(
            session,
            accounts_service.password_hasher(),
            email=ADMIN_EMAIL,
            password=admin_password,
            role=UserRole.ADMIN,
        )
        await session.commit()

    options = ReplayOptions(
        limit=config.limit if config.dataset is DemoDataset.ROUTERBENCH else None,
        seed=config.seed,
        buyers=config.buyers,
        batch=config.retrain_every_n,
        complexity=Complexity.DATASET,
        usd_to_sat=settings.replay_usd_to_sat,
        buyer_credit_sat=BUYER_CREDIT_SAT,
        wait_for_trainer=True,
        progress=None if config.quiet else lambda line: print(line, flush=True),
    )
    async with httpx.AsyncClient(base_url=f"{base_url}/api/v2", timeout=60) as http:
        admin = await login(http, ADMIN_EMAIL, admin_password)
        runner = Runner(
            sessionmaker,
            settings,
            {AgentKind.REPLAY: ReplayExecutor({train.name: train})},
            name="demo-runner",
        )
        run = await drive(http, admin, train, runner, options)
        versions = _check(await http.get("/model/versions", headers=admin))
        agents = _check(await http.get("/agents", headers=admin))
        system = _check(await http.get("/admin/metrics", headers=admin))
        ledger = _check(await http.get("/admin/ledger/check", headers=admin))
    await engine.dispose()
    replay = summarize(train, run, seed=config.seed, usd_to_sat_rate=settings.replay_usd_to_sat)
    return {
        "versions": versions,
        "agents": agents,
        "system": system,
        "ledger": ledger,
        "phases": run.phases,
        "replay": {k: replay["market"][k] for k in REPLAY_FIGURES},
    }


def route_table(
    router: DukeRouter,
    table: FullInfoTable,
    agent_ids: Sequence[str],
    prices_sat: np.ndarray,
    cost_weight: float,
    reference_price_sat: int,
) -> list[str]:
    """Return the model each prompt of ``table`` is routed to by ``router``'s greedy policy.

    ``agent_ids[j]`` is the agent replaying ``table.agents[j]``; ``prices_sat`` has shape
    (n_prompts, n_agents).
    """
    tasks = [TaskFeatures(p, complexity_of(p)) for p in table.prompts]
    p_success = router.predict_proba(tasks, list(agent_ids))
    rng = np.random.default_rng(0)
    chosen = []
    for i, task in enumerate(tasks):
        decision = choose(
            p_success[i],
            prices_sat[i],
            value_sat(reference_price_sat, task.complexity, cost_weight),
            epsilon=0.0,
            rng=rng,
        )
        chosen.append(table.agents[decision.index])
    return chosen


def _result_json(result: PolicyResult) -> dict[str, Any]:
    return {
        "success_rate": round(result.success_rate, 4),
        "cost_per_1k_usd": round(result.cost_per_1k_usd, 4),
        "n": result.n,
        "choices": dict(sorted(result.choices.items(), key=lambda kv: -kv[1])),
    }


def _evaluate(config: DemoConfig, test: FullInfoTable, market: dict[str, Any]) -> dict[str, Any]:
    settings = Settings()
    by_name = {a["name"]: a for a in market["agents"]}
    agent_ids = [by_name[m]["id"] for m in test.agents]
    complexities = np.array([complexity_of(p) for p in test.prompts])
    prices = np.array(
        [
            [
                task_price_sat(
                    by_name[m]["base_price_sat"], int(c), by_name[m]["reputation_multiplier"]
                )
                for m in test.agents
            ]
            for c in complexities
        ],
        dtype=float,
    )
    references: dict[str, Any] = {
        name: _result_json(r) for name, r in single_agent_results(test).items()
    }
    references["random"] = _result_json(random_routing_result(test, seed=config.seed))
    references["oracle"] = _result_json(oracle_result(test))
    versions = []
    for v in market["versions"]:
        router = DukeRouter.load(config.out / "models" / f"v{v['version']}.skops")
        chosen = route_table(
            router,
            test,
            agent_ids,
            prices,
            settings.default_cost_weight,
            settings.reference_price_sat,
        )
        result = evaluate_full_information(chosen, test)
        versions.append(
            {
                "version": v["version"],
                "outcomes_seen": v["outcomes_seen"],
                "auc": _round(v["metrics"].get("roc_auc")),
                "brier": _round(v["metrics"].get("brier")),
                "promoted": v["promoted"],
                **_result_json(result),
            }
        )
    singles = {k: v for k, v in references.items() if k not in ("random", "oracle")}
    best_name = max(
        singles, key=lambda k: (singles[k]["success_rate"], -singles[k]["cost_per_1k_usd"])
    )
    best = singles[best_name]
    good = [
        k for k in singles if singles[k]["success_rate"] >= best["success_rate"] - GOOD_AGENT_MARGIN
    ]
    cheapest_good = min(good, key=lambda k: (singles[k]["cost_per_1k_usd"], k))
    promoted = [v for v in versions if v["promoted"]]
    last = promoted[-1] if promoted else None
    target: dict[str, Any] = {
        "best_single_agent": best_name,
        "success_floor": round(SUCCESS_SHARE_TARGET * best["success_rate"], 4),
        "cost_ceiling_per_1k_usd": round(COST_SHARE_TARGET * best["cost_per_1k_usd"], 4),
        "last_promoted_version": last["version"] if last else None,
        "met": False,
    }
    if last is not None:
        target["success_share_of_best"] = round(last["success_rate"] / best["success_rate"], 4)
        target["cost_share_of_best"] = round(last["cost_per_1k_usd"] / best["cost_per_1k_usd"], 4)
        target["met"] = bool(
            last["success_rate"] >= target["success_floor"]
            and last["cost_per_1k_usd"] <= target["cost_ceiling_per_1k_usd"]
            and last["success_rate"] > references["random"]["success_rate"]
        )
    return {
        "dataset": config.dataset.value,
        "seed": config.seed,
        "train_prompts": market["system"]["outcomes"],
        "test_prompts": len(test.prompts),
        "agents": len(test.agents),
        "cost_weight": settings.default_cost_weight,
        "references": references,
        "reference_policies": {
            "best_single_agent": best_name,
            "cheapest_good_agent": cheapest_good,
            "good_agent_margin": GOOD_AGENT_MARGIN,
        },
        "versions": versions,
        "served": served_curve(versions),
        "target": target,
        "market": {
            "system": market["system"],
            "ledger_ok": market["ledger"]["ok"],
            "replay": market["replay"],
        },
        "phases": market["phases"],
    }


def _round(x: Any) -> float | None:
    return round(float(x), 4) if isinstance(x, int | float) and np.isfinite(x) else None


def format_report(report: dict[str, Any]) -> str:
    """Return the report as the table the demo prints."""
    lines = [
        f"{report.get('dataset', 'routerbench')}: {report['train_prompts']} train tasks through "
        f"the market, {report['test_prompts']} test prompts scored with full information",
        f"{'policy':<36} {'outcomes':>8} {'AUC':>6} {'success':>8} {'$/1k tasks':>10}  "
        "promoted  served",
    ]
    served = report.get("served") or [{"version": None}] * len(report["versions"])
    for v, s in zip(report["versions"], served, strict=True):
        auc = f"{v['auc']:.3f}" if v["auc"] is not None else "-"
        lines.append(
            f"{'Duke v' + str(v['version']):<36} {v['outcomes_seen']:>8} {auc:>6} "
            f"{v['success_rate']:>8.3f} {v['cost_per_1k_usd']:>10.3f}  "
            f"{'yes' if v['promoted'] else 'no':<8}  "
            + (f"v{s['version']}" if s["version"] is not None else "-")
        )
    lines.append("")
    roles = {
        name: f" ({role.replace('_', ' ')})"
        for role, name in report.get("reference_policies", {}).items()
        if isinstance(name, str)
    }
    for name, r in sorted(report["references"].items(), key=lambda kv: -kv[1]["success_rate"]):
        lines.append(
            f"{name:<36} {'':>8} {'':>6} {r['success_rate']:>8.3f} "
            f"{r['cost_per_1k_usd']:>10.3f}{roles.get(name, '')}"
        )
    t = report["target"]
    lines.append("")
    lines.append(
        f"target: last promoted v{t['last_promoted_version']} needs "
        f"success >= {t['success_floor']:.3f} "
        f"and $/1k <= {t['cost_ceiling_per_1k_usd']:.3f} (vs {t['best_single_agent']}): "
        f"{'MET' if t['met'] else 'NOT MET'}"
        + (
            f" (success {t['success_share_of_best']:.1%} of best, "
            f"cost {t['cost_share_of_best']:.1%})"
            if "success_share_of_best" in t
            else ""
        )
    )
    replay = report["market"]["replay"]
    q = replay.get("price_to_cost_quantiles") or {}
    lines.append(
        f"price / recorded cost of the calls: mean {replay['price_to_cost']}"
        + (f" (p10 {q['p10']}, median {q['p50']}, p90 {q['p90']})" if q else "")
        + f"; tasks without a record {replay['unrecorded']}"
    )
    lines.append(
        f"ledger balanced: {report['market']['ledger_ok']}; "
        f"wall time {report.get('wall_time_s', '?')} s "
        f"({', '.join(f'{k} {v}' for k, v in report['phases'].items())})"
    )
    return "\n".join(lines)


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versions = report["versions"]
    refs = report["references"]
    best = report["target"]["best_single_agent"]
    cheap = report.get("reference_policies", {}).get("cheapest_good_agent", best)
    dataset = {"routerbench": "RouterBench", "mmlu-pro": "MMLU-Pro"}.get(
        report.get("dataset", "routerbench"), report.get("dataset")
    )
    x = [v["outcomes_seen"] for v in versions]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, color, label in (
        (ax1, "success_rate", "tab:blue", "every version (greedy, test prompts)"),
        (ax2, "cost_per_1k_usd", "tab:orange", "every version"),
    ):
        y = [v[key] for v in versions]
        ax.plot(x, y, color=color, alpha=0.5, marker="o", markerfacecolor="none", label=label)
        ax.step(x, _served(versions, key), where="post", color=color, label="served (champion)")
        promoted = [(xi, yi) for xi, yi, v in zip(x, y, versions, strict=True) if v["promoted"]]
        if promoted:
            ax.scatter(*zip(*promoted, strict=True), color=color, zorder=3, label="promoted")
    lines = [
        (best, "--", "grey", f"best single agent: {best}"),
        (cheap, "--", "tab:green", f"cheapest good agent: {cheap}"),
        ("oracle", ":", "grey", "oracle"),
        ("random", "-.", "grey", "random"),
    ]
    for name, style, color, label in lines:
        if label.startswith("cheapest") and cheap == best:
            continue
        for ax, key in ((ax1, "success_rate"), (ax2, "cost_per_1k_usd")):
            ax.axhline(refs[name][key], linestyle=style, color=color, label=label, linewidth=1)
    costs = [r["cost_per_1k_usd"] for r in refs.values() if r["cost_per_1k_usd"] > 0]
    if costs and max(costs) / min(costs) > 20:
        ax2.set_yscale("log")
    ax1.set_xlabel("outcomes seen")
    ax1.set_ylabel(f"success rate on {dataset} test")
    ax1.legend(fontsize=7)
    ax2.set_xlabel("outcomes seen")
    ax2.set_ylabel("USD per 1,000 tasks (recorded cost of the chosen calls)")
    ax2.legend(fontsize=7)
    fig.suptitle(
        f"Duke's learning curve on {dataset} ({report.get('agents', '?')} agents; bandit "
        "feedback from the live market, scored on held-out test prompts with full information)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def served_curve(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return, after each retraining, the version the market served (the last promoted one so
    far) and its test figures: ``outcomes_seen``, ``version`` (None before the first promotion,
    when routing is uniform), ``success_rate``, ``cost_per_1k_usd``."""
    curve: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for v in versions:
        if v["promoted"]:
            current = v
        curve.append(
            {
                "outcomes_seen": v["outcomes_seen"],
                "version": current["version"] if current else None,
                "success_rate": current["success_rate"] if current else None,
                "cost_per_1k_usd": current["cost_per_1k_usd"] if current else None,
            }
        )
    return curve


def _served(versions: list[dict[str, Any]], key: str) -> list[float]:
    """``key`` of the version serving after each retraining: the last promoted one so far
    (nan before the first promotion), so the plot shows what buyers got, not just what was
    trained."""
    served: list[float] = []
    current = math.nan
    for v in versions:
        if v["promoted"]:
            current = float(v[key])
        served.append(current)
    return served
