"""``dukenet finetune sft|dpo``: fine-tune a small local model on an export and register it as a
``local`` agent. torch, transformers, TRL and PEFT are imported only when a command runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

finetune_app = typer.Typer(
    help="Fine-tune DukeNET's own model (SFT / DPO with TRL + LoRA) and register it as an agent.",
    no_args_is_help=True,
)

DatasetOption = Annotated[
    Path, typer.Option(help="An export directory (with manifest.json), or its .jsonl/.parquet.")
]
BaseOption = Annotated[
    str, typer.Option(help="smollm2 (SmolLM2-135M-Instruct, bundled), tiny-random, or a DIR.")
]
NameOption = Annotated[
    str, typer.Option(help="Name of the registered agent (and the artifact's directory).")
]
EpochsOption = Annotated[float, typer.Option(help="Epochs over the training split.")]
MaxStepsOption = Annotated[int, typer.Option(help="Optimizer steps at most (-1: epochs decide).")]
LrOption = Annotated[
    float | None,
    typer.Option("--lr", help="Learning rate of the LoRA weights (default 2e-4 sft, 5e-5 dpo)."),
]
LoraROption = Annotated[int, typer.Option(help="LoRA rank.")]
BatchOption = Annotated[int, typer.Option(help="Examples per optimizer step.")]
MaxLengthOption = Annotated[int, typer.Option(help="Tokens per example at most (truncated).")]
EvalShareOption = Annotated[float, typer.Option(help="Share of prompts held out (0..1).")]
SeedOption = Annotated[int, typer.Option(help="Seed of the split, initialisation and order.")]
RegisterOption = Annotated[
    bool, typer.Option(help="Register the result as a local agent (owned by an admin).")
]
ShadowOption = Annotated[
    bool, typer.Option(help="Register it disabled: routed no task until an admin enables it.")
]
OwnerOption = Annotated[
    str | None, typer.Option(help="Email of the admin owning the agent (default: oldest admin).")
]
PriceOption = Annotated[
    int | None, typer.Option(help="The agent's base price in satoshis (default: market's).")
]
DeviceOption = Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if present).")]


DEFAULT_LR = {"sft": 2e-4, "dpo": 5e-5}
"""Default learning rates of the LoRA weights by method."""

HELP = {
    "sft": "Supervised fine-tune on an SFT export's conversations, register the result as a "
    "local agent and print the run's figures as JSON.",
    "dpo": "Preference fine-tune (DPO) on a DPO export's chosen / rejected pairs, register the "
    "result as a local agent and print the run's figures as JSON.",
}


def _command(method: str) -> Callable[..., None]:
    """Return the ``dukenet finetune METHOD`` command (both share their options)."""

    def command(
        dataset: DatasetOption,
        output_name: NameOption,
        base: BaseOption = "smollm2",
        epochs: EpochsOption = 1.0,
        max_steps: MaxStepsOption = -1,
        lr: LrOption = None,
        lora_r: LoraROption = 8,
        batch_size: BatchOption = 4,
        max_length: MaxLengthOption = 512,
        eval_share: EvalShareOption = 0.2,
        seed: SeedOption = 0,
        register: RegisterOption = True,
        shadow: ShadowOption = False,
        owner: OwnerOption = None,
        price_sat: PriceOption = None,
        device: DeviceOption = None,
        beta: Annotated[float, typer.Option(help="DPO's temperature (dpo only).")] = 0.1,
    ) -> None:
        _run(
            method, dataset, output_name, base, epochs, max_steps, lr or DEFAULT_LR[method],
            lora_r, batch_size, max_length, eval_share, seed, register, shadow, owner,
            price_sat, device, beta=beta,
        )  # fmt: skip

    return command


for _method in ("sft", "dpo"):
    finetune_app.command(_method, help=HELP[_method])(_command(_method))


def _run(
    method: str,
    dataset: Path,
    output_name: str,
    base: str,
    epochs: float,
    max_steps: int,
    lr: float,
    lora_r: int,
    batch_size: int,
    max_length: int,
    eval_share: float,
    seed: int,
    register: bool,
    shadow: bool,
    owner: str | None,
    price_sat: int | None,
    device: str | None,
    *,
    beta: float,
) -> None:
    from dukenet.config import Settings
    from dukenet.db import create_sessionmaker, engine_for
    from dukenet.errors import DukenetError
    from dukenet.finetune import service
    from dukenet.finetune.trainer import Method, TrainConfig

    if device not in (None, "cpu", "cuda"):
        raise typer.BadParameter("must be cpu or cuda", param_hint="--device")
    if price_sat is not None and price_sat <= 0:
        raise typer.BadParameter("must be a positive number of satoshis", param_hint="--price-sat")
    settings = Settings()

    async def run() -> service.FinetuneOutcome:
        config = TrainConfig(
            epochs=epochs,
            max_steps=max_steps,
            learning_rate=lr,
            lora_r=lora_r,
            lora_alpha=2 * lora_r,
            batch_size=batch_size,
            eval_share=eval_share,
            max_length=max_length,
            beta=beta,
            seed=seed,
            device=device,
        )
        request = service.FinetuneRequest(
            method=Method(method),
            dataset=dataset,
            output_name=output_name,
            base=base,
            config=config,
            register=register,
            shadow=shadow,
            owner_email=owner,
            base_price_sat=price_sat,
        )
        engine = engine_for(settings)
        try:
            return await service.finetune(
                create_sessionmaker(engine), settings=settings, request=request
            )
        finally:
            await engine.dispose()

    try:
        outcome = asyncio.run(run())
    except DukenetError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(outcome.as_json(), indent=2, sort_keys=True))
