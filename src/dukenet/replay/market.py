"""Drive a running market with a recorded-outcomes dataset (``dukenet replay``, ``dukenet demo``).

Everything goes through the HTTP API, as a real admin and real buyers would: the admin registers
one ``replay`` agent per dataset agent, buyers are registered and credited, and every task is
submitted with ``POST /tasks`` (the market routes and prices it). A runner — anything with an
``async run_once() -> bool``: the database ``Runner`` or the HTTP ``RemoteRunner`` — executes the
assigned tasks with a ``ReplayExecutor`` holding the dataset, which answers each task with the
recorded outcome of the agent the market chose and reports its recorded cost.

Prices (DESIGN.md "Formulas"): ``price = base × complexity × reputation``, where the reputation
multiplier is 1.2 for a new agent and 1.2-2.0 with its success rate. How a replay sets ``base`` and
``complexity`` is the ``pricing`` option (``Pricing``):

- ``complexity`` (default): base = the agent's mean recorded cost per call × ``usd_to_sat``, and the
  task's complexity (1..10) from ``complexity`` (``Complexity``): ``dataset``, the dataset's
  ``complexity`` column, else ``text``: ``complexity_of(prompt)``, derived from the prompt alone —
  what a buyer could state. So ``price = mean recorded cost × complexity × reputation``: on
  RouterBench (complexity 2-7) prices run 2.4-14× the recorded cost of the call.
- ``recorded-cost`` (the old ``complexity=cost``): complexity derived from the recorded costs,
  ``clip(round(COST_SCALE × r_t), 1, 10)`` where ``r_t`` is the mean over agents of
  ``cost(t, a) / mean_cost(a)`` (how much dearer than usual the task's calls were), and base =
  ``mean_cost / COST_SCALE``; so ``price = mean_cost(a) × r_t × reputation`` (``r_t`` in steps of
  1/4, at most 10/4): the price follows the task's recorded cost, times the reputation
  multiplier. The residual is the agent's own deviation from the task's mean ratio.

On RouterBench train (every (task, agent) cell), the mean |log(price / recorded cost)| (reputation
aside) is 0.28 with ``text`` complexity, 0.22 with a flat price at the mean, and 0.13 with
``recorded-cost``. ``recorded-cost`` is the honest price, but it is derived from the very answers
being replayed (their lengths), which a real buyer does not know before the task runs and which
the router then sees as a feature (complexity is one), so the demo keeps ``text`` complexity.
Whatever the prices, the summary reports money two ways: satoshis paid on the market, with the
realised ``price / recorded cost`` ratio of the calls made (mean and quantiles), and the recorded
USD cost of the chosen agent's call (``cost_per_1k_usd``), which is what the demo's $/1k is
computed from.

Each task is submitted with its dataset task id as ``external_id``; the runner's
``ReplayExecutor`` finds the record by that id, and the summary names the tasks whose record could
not be found or was ambiguous (``RecordedOutcomes.find``).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import numpy as np

from dukenet.learning.evaluation import (
    evaluate_full_information,
    oracle_result,
    random_routing_result,
    single_agent_results,
)
from dukenet.learning.features import MAX_COMPLEXITY, MIN_COMPLEXITY
from dukenet.learning.routerbench import complexity_of, table_from_outcomes
from dukenet.market.pricing import usd_to_sat
from dukenet.replay import Complexity, Pricing
from dukenet.replay.dataset import Lookup, RecordedOutcomes

COST_SCALE = 4
"""Cost-derived complexity of a task whose calls cost each agent's mean (median task -> 4)."""
BUYER_EMAIL_DOMAIN = "dukenet-replay.example.com"


class RunsTasks(Protocol):
    """A runner: executes at most one claimed task per call, True if there was one."""

    async def run_once(self) -> bool:
        """Claim and finish at most one task; return True if there was one."""
        ...


class ReplayError(RuntimeError):
    """The market refused a step of the replay (the message has the request and the answer)."""


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay: which tasks, in what order, how many buyers, prices and pacing.

    ``limit`` keeps the first N tasks after the seeded shuffle (``shuffle=False`` keeps the file
    order). Tasks are submitted in batches of ``batch``; after each batch the runner drains the
    queue and, with ``wait_for_trainer``, the server's trainer is given time to retrain. Agents
    are named ``agent_prefix + agent``. Prices: ``pricing`` (``Pricing``; ``recorded-cost`` is the
    same as ``complexity=cost``, and is what ``complexity`` becomes). Money: ``usd_to_sat``
    converts recorded USD to satoshis, each buyer is credited ``buyer_credit_sat``.

    Raises:
        ValueError: ``pricing="recorded-cost"`` with a ``complexity`` other than ``cost`` or the
            default ``dataset``.
    """

    limit: int | None = None
    seed: int = 0
    shuffle: bool = True
    buyers: int = 1
    batch: int = 100
    complexity: Complexity = Complexity.DATASET
    pricing: Pricing = Pricing.COMPLEXITY
    usd_to_sat: float = 1e7
    agent_prefix: str = ""
    buyer_credit_sat: int = 10**13
    wait_for_trainer: bool = False
    trainer_timeout_s: float = 60.0
    finish_timeout_s: float = 120.0
    progress: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.complexity is Complexity.COST:
            object.__setattr__(self, "pricing", Pricing.RECORDED_COST)
        elif self.pricing is Pricing.RECORDED_COST:
            if self.complexity is not Complexity.DATASET:
                raise ValueError(
                    f"pricing 'recorded-cost' derives the complexity from the recorded costs; "
                    f"it cannot be combined with complexity {self.complexity.value!r}"
                )
            object.__setattr__(self, "complexity", Complexity.COST)


@dataclass(frozen=True)
class SubmittedTask:
    """A dataset task as submitted: its dataset id, the market's task id, chosen agent, price in
    sat and complexity, and what the market stored (``description``, ``external_id``), which is
    what the runner's executor looks the record up by."""

    task_id: str
    market_task_id: str
    agent: str
    price_sat: int
    complexity: int
    description: str = ""
    external_id: str | None = None


@dataclass
class ReplayRun:
    """What a replay did: the agents (dataset agent -> market agent id), tasks, final statuses."""

    dataset: str
    agents: dict[str, str]
    tasks: list[SubmittedTask] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)


def order_tasks(dataset: RecordedOutcomes, options: ReplayOptions) -> list[str]:
    """Return the task ids to submit, in order: seeded permutation (or file order), then limit."""
    ids = [t.task_id for t in dataset.tasks]
    if options.shuffle:
        ids = [ids[i] for i in np.random.default_rng(options.seed).permutation(len(ids))]
    return ids if options.limit is None else ids[: options.limit]


def task_complexities(dataset: RecordedOutcomes, mode: Complexity) -> dict[str, int]:
    """Return each task's complexity (1..10) under ``mode`` (see the module docstring)."""
    if mode is Complexity.COST:
        means = dataset.mean_cost_usd()
        ratios: dict[str, list[float]] = {t.task_id: [] for t in dataset.tasks}
        for o in dataset.outcomes:
            mean = means[o.agent]
            ratios[o.task_id].append(o.cost_usd / mean if mean > 0 else 1.0)
        return {
            task_id: int(
                min(
                    max(round(COST_SCALE * (math.fsum(r) / len(r) if r else 1.0)), MIN_COMPLEXITY),
                    MAX_COMPLEXITY,
                )
            )
            for task_id, r in ratios.items()
        }
    return {
        t.task_id: (
            t.complexity
            if mode is Complexity.DATASET and t.complexity is not None
            else complexity_of(t.prompt)
        )
        for t in dataset.tasks
    }


def base_prices_sat(dataset: RecordedOutcomes, options: ReplayOptions) -> dict[str, int]:
    """Return each agent's base price in sat: mean recorded USD cost × ``usd_to_sat``
    (÷ ``COST_SCALE`` with cost-derived complexity), at least 1 sat."""
    scale = COST_SCALE if options.complexity is Complexity.COST else 1
    return {
        a: usd_to_sat(c / scale, options.usd_to_sat) for a, c in dataset.mean_cost_usd().items()
    }


def _check(response: httpx.Response) -> Any:
    if response.is_error:
        raise ReplayError(
            f"{response.request.method} {response.request.url}: "
            f"{response.status_code} {response.text}"
        )
    return response.json()


async def login(http: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    """Log in and return the ``Authorization`` header for the access token."""
    token = _check(await http.post("/auth/login", json={"email": email, "password": password}))
    return {"Authorization": f"Bearer {token['access_token']}"}


async def register_agents(
    http: httpx.AsyncClient,
    admin: dict[str, str],
    dataset: RecordedOutcomes,
    options: ReplayOptions,
) -> dict[str, str]:
    """Register one replay agent per dataset agent (admin); return dataset agent -> agent id.

    An agent of the same name that already replays the same dataset and model is reused.

    Raises:
        ReplayError: the server refused (e.g. the name is taken by another agent).
    """
    prices = base_prices_sat(dataset, options)
    ids: dict[str, str] = {}
    existing: dict[str, Any] | None = None
    for agent in dataset.agents:
        name = options.agent_prefix + agent
        config = {"dataset": dataset.name, "model": agent}
        response = await http.post(
            "/agents",
            headers=admin,
            json={
                "name": name,
                "kind": "replay",
                "description": f"Recorded answers of {agent} from the {dataset.name} dataset",
                "base_price_sat": prices[agent],
                "replay": config,
            },
        )
        if response.status_code == 409:
            if existing is None:
                listed = _check(await http.get("/agents", headers=admin))
                existing = {a["name"]: a for a in listed}
            found = existing.get(name)
            if found is not None:
                detail = _check(await http.get(f"/agents/{found['id']}", headers=admin))
                if detail["kind"] == "replay" and detail["config"] == config:
                    ids[agent] = found["id"]
                    continue
        ids[agent] = _check(response)["id"]
    return ids


async def create_buyers(
    http: httpx.AsyncClient, admin: dict[str, str], count: int, credit_sat: int
) -> list[dict[str, str]]:
    """Register ``count`` buyers with random emails, credit each, return their auth headers."""
    tag = secrets.token_hex(4)
    headers = []
    for b in range(count):
        email, password = f"buyer{b}-{tag}@{BUYER_EMAIL_DOMAIN}", secrets.token_urlsafe(12)
        user = _check(
            await http.post(
                "/auth/register", json={"email": email, "password": password, "role": "buyer"}
            )
        )
        _check(
            await http.post(
                f"/admin/users/{user['id']}/credit", headers=admin, json={"amount_sat": credit_sat}
            )
        )
        headers.append(await login(http, email, password))
    return headers


async def wait_for_trainer(
    http: httpx.AsyncClient, admin: dict[str, str], timeout_s: float = 60.0
) -> None:
    """Wait until no training runs and fewer than ``retrain_every_n`` outcomes are pending.

    Raises:
        ReplayError: the trainer did not catch up within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _check(await http.get("/model/status", headers=admin))
        run = status["last_run"]
        idle = run is None or run["status"] != "running"
        if idle and status["outcomes_since_last_training"] < status["retrain_every_n"]:
            return
        await asyncio.sleep(0.05)
    raise ReplayError(f"the trainer did not catch up within {timeout_s:g} s")


async def _statuses(http: httpx.AsyncClient, buyers: Sequence[dict[str, str]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for headers in buyers:
        offset = 0
        while True:
            page = _check(
                await http.get("/tasks", headers=headers, params={"limit": 500, "offset": offset})
            )
            counts.update(t["status"] for t in page["items"])
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
    return counts


async def _finish(
    http: httpx.AsyncClient,
    buyers: Sequence[dict[str, str]],
    runner: RunsTasks,
    timeout_s: float,
) -> Counter[str]:
    """Run until no task of these buyers is assigned or executing; return the status counts."""
    deadline = time.monotonic() + timeout_s
    while True:
        while await runner.run_once():
            pass
        counts = await _statuses(http, buyers)
        if not counts["assigned"] and not counts["executing"]:
            return counts
        if time.monotonic() > deadline:
            raise ReplayError(
                f"tasks still open after {timeout_s:g} s: {dict(counts)} "
                "(is another runner holding them?)"
            )
        await asyncio.sleep(0.2)


async def drive(
    http: httpx.AsyncClient,
    admin: dict[str, str],
    dataset: RecordedOutcomes,
    runner: RunsTasks,
    options: ReplayOptions,
) -> ReplayRun:
    """Replay ``dataset`` on the market behind ``http`` (base URL ``…/api/v2``).

    Registers the agents and buyers, submits the tasks batch by batch (buyers in turn), lets
    ``runner`` execute them, optionally waits for the trainer after each batch, and returns what
    happened. Deterministic for a fixed seed when the server's routing seed is fixed and nothing
    else uses the market.

    Raises:
        ReplayError: the server refused a request, or tasks stayed open past the timeout.
    """
    started = time.perf_counter()
    agents = await register_agents(http, admin, dataset, options)
    by_id = {agent_id: agent for agent, agent_id in agents.items()}
    buyers = await create_buyers(http, admin, max(options.buyers, 1), options.buyer_credit_sat)
    complexities = task_complexities(dataset, options.complexity)
    order = order_tasks(dataset, options)
    run = ReplayRun(dataset=dataset.name, agents=agents)
    phases = {"setup_s": time.perf_counter() - started, "submit_s": 0.0, "execute_s": 0.0}
    if options.wait_for_trainer:
        phases["train_wait_s"] = 0.0
    for start in range(0, len(order), max(options.batch, 1)):
        t0 = time.perf_counter()
        batch = order[start : start + options.batch]
        for i, task_id in enumerate(batch):
            task = dataset.task(task_id)
            assert task is not None
            created = _check(
                await http.post(
                    "/tasks",
                    headers=buyers[(start + i) % len(buyers)],
                    json={
                        "description": task.prompt,
                        "complexity": complexities[task_id],
                        "external_id": task_id,
                        "idempotency_key": f"{dataset.name}:{task_id}"[:200],
                    },
                )
            )
            run.tasks.append(
                SubmittedTask(
                    task_id=task_id,
                    market_task_id=created["id"],
                    agent=by_id.get(created["agent_id"], created["agent_id"]),
                    price_sat=created["price_sat"],
                    complexity=complexities[task_id],
                    description=created["description"],
                    external_id=created.get("external_id"),
                )
            )
        t1 = time.perf_counter()
        while await runner.run_once():
            pass
        t2 = time.perf_counter()
        phases["submit_s"] += t1 - t0
        phases["execute_s"] += t2 - t1
        if options.wait_for_trainer:
            await wait_for_trainer(http, admin, options.trainer_timeout_s)
            phases["train_wait_s"] += time.perf_counter() - t2
        if options.progress is not None:
            options.progress(f"{start + len(batch):>6} / {len(order)} tasks done")
    t3 = time.perf_counter()
    run.statuses = dict(
        sorted((await _finish(http, buyers, runner, options.finish_timeout_s)).items())
    )
    phases["execute_s"] += time.perf_counter() - t3
    run.phases = {k: round(v, 1) for k, v in phases.items()}
    return run


async def replay_on_server(
    dataset: RecordedOutcomes,
    server: str,
    *,
    admin_email: str,
    admin_password: str,
    options: ReplayOptions,
) -> dict[str, Any]:
    """Replay ``dataset`` on the server at ``server`` entirely over HTTP; return ``summarize``'s.

    Logs in as the admin, creates a temporary API key for it and runs a ``RemoteRunner`` with a
    ``ReplayExecutor`` holding the dataset: it claims the tasks of the admin's agents (the
    replay agents it registers), so the dataset never has to be on the server. The key is
    deleted at the end.

    Raises:
        ReplayError: the server refused a request, or tasks stayed open past the timeout.
    """
    from dukenet.agents.models import AgentKind
    from dukenet.runners.remote import RemoteRunner
    from dukenet.runners.replay import ReplayExecutor

    api = server.rstrip("/") + "/api/v2"
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        admin = await login(http, admin_email, admin_password)
        key = _check(
            await http.post(
                "/api-keys", headers=admin, json={"name": f"dukenet replay {dataset.name}"[:120]}
            )
        )
        try:
            async with httpx.AsyncClient(
                base_url=api, headers={"X-API-Key": key["key"]}, timeout=60
            ) as runner_http:
                runner = RemoteRunner(
                    runner_http,
                    {AgentKind.REPLAY: ReplayExecutor({dataset.name: dataset})},
                    name=f"replay-{secrets.token_hex(3)}",
                )
                run = await drive(http, admin, dataset, runner, options)
        finally:
            await http.delete(f"/api-keys/{key['id']}", headers=admin)
    return summarize(
        dataset,
        run,
        seed=options.seed,
        usd_to_sat_rate=options.usd_to_sat,
        pricing=options.pricing,
    )


def summarize(
    dataset: RecordedOutcomes,
    run: ReplayRun,
    *,
    seed: int = 0,
    usd_to_sat_rate: float = 1e7,
    pricing: Pricing = Pricing.COMPLEXITY,
) -> dict[str, Any]:
    """Return the replay's figures, from the dataset's records of the agents the market chose.

    Each task's record is looked up as the runner's ``ReplayExecutor`` does, from what the market
    stored (its description and ``external_id``; ``RecordedOutcomes.find``), so a task the
    executor could not answer from a record counts as a failure here too.

    ``market``: tasks, final statuses, the recorded success rate and mean quality of the chosen
    agents, ``cost_per_1k_usd`` (recorded USD of the chosen calls per 1,000 tasks), satoshis
    charged, ``price_to_cost`` (mean of price_sat / (recorded cost × rate) over the calls with a
    record and a cost > 0; 1.0 = prices equal recorded costs) and ``price_to_cost_quantiles``
    (p10, p50, p90 of the same), ``unrecorded`` (tasks answered without a record) and
    ``without_record`` (their dataset task ids by reason: ``missing``, ``ambiguous``,
    ``mismatch``, ``unrecorded`` for a model that never answered the task). ``choices``: tasks
    per agent. ``references``: every single agent, random routing and the oracle on the same
    tasks (full information from the dataset; a pair with no record counts as a failure at the
    agent's mean cost).
    """
    submitted = run.tasks
    found = [dataset.find(t.description, t.external_id) for t in submitted]
    outcomes = [
        None if f.task is None else dataset.outcome(f.task.task_id, t.agent)
        for t, f in zip(submitted, found, strict=True)
    ]
    recorded = [o for o in outcomes if o is not None]
    without_record: dict[str, list[str]] = {}
    for t, f, o in zip(submitted, found, outcomes, strict=True):
        if o is None:
            reason = "unrecorded" if f.lookup is Lookup.HIT else f.lookup.value
            without_record.setdefault(reason, []).append(t.task_id)
    n = len(submitted)
    ratios = [
        t.price_sat / (o.cost_usd * usd_to_sat_rate)
        for t, o in zip(submitted, outcomes, strict=True)
        if o is not None and o.cost_usd > 0
    ]
    market: dict[str, Any] = {
        "tasks": n,
        "statuses": run.statuses,
        "success_rate": round(sum(o.success for o in recorded) / n, 4) if n else None,
        "mean_quality": round(sum(o.quality for o in recorded) / n, 4) if n else None,
        "cost_per_1k_usd": round(1000 * math.fsum(o.cost_usd for o in recorded) / n, 4)
        if n
        else None,
        "charged_sat": sum(t.price_sat for t in submitted),
        "price_to_cost": round(float(np.mean(ratios)), 3) if ratios else None,
        "price_to_cost_quantiles": (
            dict(
                zip(
                    ("p10", "p50", "p90"),
                    np.round(np.quantile(ratios, [0.1, 0.5, 0.9]), 3).tolist(),
                    strict=True,
                )
            )
            if ratios
            else None
        ),
        "unrecorded": n - len(recorded),
        "without_record": without_record,
    }
    references: dict[str, Any] = {}
    if n:
        table = table_from_outcomes(dataset.subset(dict.fromkeys(t.task_id for t in submitted)))
        for name, result in single_agent_results(table).items():
            references[name] = _figures(result)
        references["random"] = _figures(random_routing_result(table, seed=seed))
        references["oracle"] = _figures(oracle_result(table))
        routed = evaluate_full_information([t.agent for t in submitted], table)
        market["success_rate_full_info"] = round(routed.success_rate, 4)
    return {
        "dataset": dataset.name,
        "pricing": pricing.value,
        "market": market,
        "choices": dict(Counter(t.agent for t in submitted).most_common()),
        "complexity": dict(sorted(Counter(t.complexity for t in submitted).items())),
        "references": references,
        "phases": run.phases,
    }


def _figures(result: Any) -> dict[str, float]:
    return {
        "success_rate": round(float(result.success_rate), 4),
        "cost_per_1k_usd": round(float(result.cost_per_1k_usd), 4),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Return the summary as the table ``dukenet replay`` prints."""
    m = summary["market"]
    lines = [
        f"dataset {summary['dataset']}: {m['tasks']} tasks, statuses "
        + ", ".join(f"{k} {v}" for k, v in m["statuses"].items()),
        f"{'policy':<40} {'success':>8} {'$/1k tasks':>10} {'tasks':>6}",
        f"{'market (Duke)':<40} {_num(m['success_rate'])} {_num(m['cost_per_1k_usd'], 10)} "
        f"{m['tasks']:>6}",
    ]
    for name, r in sorted(summary["references"].items(), key=lambda kv: -kv[1]["success_rate"]):
        chosen = summary["choices"].get(name, "")
        lines.append(
            f"{name:<40} {_num(r['success_rate'])} {_num(r['cost_per_1k_usd'], 10)} {chosen:>6}"
        )
    q = m.get("price_to_cost_quantiles")
    spread = f" (p10 {q['p10']}, median {q['p50']}, p90 {q['p90']})" if q else ""
    lines.append(
        f"pricing {summary.get('pricing', Pricing.COMPLEXITY.value)}: charged "
        f"{m['charged_sat']} sat; price / recorded cost: mean {m['price_to_cost']}{spread}"
    )
    lines.append(f"tasks without a record {m['unrecorded']}" + _named(m.get("without_record", {})))
    lines.append("phases: " + ", ".join(f"{k} {v}" for k, v in summary["phases"].items()))
    return "\n".join(lines)


def _named(without_record: dict[str, list[str]], most: int = 5) -> str:
    """``' (missing: a, b; ambiguous: c, +2 more)'``: the dataset task ids by reason."""
    if not without_record:
        return ""
    parts = []
    for reason, ids in without_record.items():
        more = f", +{len(ids) - most} more" if len(ids) > most else ""
        parts.append(f"{reason} {len(ids)}: {', '.join(ids[:most])}{more}")
    return " (" + "; ".join(parts) + ")"


def _num(x: float | None, width: int = 8) -> str:
    return f"{x:>{width}.3f}" if x is not None else f"{'-':>{width}}"
