"""Fine-tune a base model on an exported dataset: SFT or DPO with TRL and a PEFT LoRA adapter.

``train_sft`` and ``train_dpo`` read an export (``dukenet datasets export sft|dpo``: the
directory with its ``manifest.json``, or the ``.jsonl`` / ``.parquet`` file), hold out a test
split by prompt (no prompt is in both halves, so held-out figures are on prompts never trained
on), train a LoRA adapter and save the adapter only (PEFT's ``save_pretrained``, safetensors: no
pickle) with its tokenizer and the base it applies to (``base_model.BASE_FILE``: its name or
path, seed and SHA-256): a few megabytes where the merged model would take the base's size
(517 MiB for SmolLM2-135M in float32). ``base_model.load_base`` on the artifact loads the base
and merges the adapter in memory. The directory is written under a temporary name and renamed
when complete, so a failed run leaves no artifact.

On the CPU training runs in float32 without gradient checkpointing; a GPU is used when present.
Every failure a user can cause (dataset missing, malformed, of the wrong kind or too small to
hold out a split; base not loadable; out of memory) raises ``FinetuneError`` naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dukenet.finetune.base_model import (
    SMOLLM2,
    default_device,
    directory_bytes,
    directory_sha256,
    load_base,
    resolve_base,
    save_adapter,
)
from dukenet.finetune.errors import FinetuneError

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MANIFEST = "manifest.json"
RUN_FILE = "dukenet_finetune.json"
"""The file in an artifact directory describing the fine-tune (method, base, config, split,
metrics); the local agent reads its generation settings from the model directory itself."""
HELDOUT_FILE = "heldout.jsonl"
"""The held-out rows, saved with the artifact so its figures can be recomputed on them."""


class Method(StrEnum):
    """The fine-tuning methods: supervised (``sft``) or direct preference optimisation."""

    SFT = "sft"
    DPO = "dpo"


REQUIRED_COLUMNS: dict[Method, tuple[str, ...]] = {
    Method.SFT: ("messages",),
    Method.DPO: ("prompt", "chosen", "rejected"),
}


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one fine-tune.

    ``epochs`` over the training split unless ``max_steps`` (> 0) caps the optimizer steps;
    ``learning_rate`` of the LoRA weights; ``lora_r`` / ``lora_alpha`` the adapter's rank and
    scale; ``batch_size`` examples per step; ``eval_share`` the share of prompts held out (at
    least one); ``max_length`` tokens per example (longer ones are truncated); ``beta`` DPO's
    temperature; ``seed`` fixes the split, the adapter's initialisation and the data order;
    ``device`` ``cpu`` / ``cuda`` (default: a GPU when present).
    """

    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 2e-4
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    batch_size: int = 4
    eval_share: float = 0.2
    max_length: int = 512
    beta: float = 0.1
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs > 0,
            "max_steps": self.max_steps == -1 or self.max_steps > 0,
            "learning_rate": self.learning_rate > 0,
            "lora_r": self.lora_r > 0,
            "lora_alpha": self.lora_alpha > 0,
            "lora_dropout": 0 <= self.lora_dropout < 1,
            "batch_size": self.batch_size > 0,
            "eval_share": 0 < self.eval_share < 1,
            "max_length": self.max_length >= 16,
            "beta": self.beta > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise FinetuneError(f"invalid training setting {bad[0]}={getattr(self, bad[0])!r}")


@dataclass(frozen=True)
class TrainResult:
    """What a fine-tune produced.

    ``artifact_dir`` holds the LoRA adapter, its tokenizer, ``base_model.BASE_FILE``,
    ``RUN_FILE`` and ``HELDOUT_FILE``; ``artifact_sha256`` is ``directory_sha256`` of it and
    ``artifact_bytes`` the size of its files (bytes). ``metrics`` hold
    the trainer's held-out figures before and after training (``eval_loss_before`` /
    ``eval_loss_after`` for both methods; DPO adds ``eval_preference_accuracy_before/_after``,
    the share of held-out pairs whose implicit reward ranks chosen above rejected, and the
    reward margins) and ``train_loss``. ``seconds`` is the training wall time (s),
    ``seconds_per_step`` per optimizer step (s).
    """

    method: Method
    base: dict[str, Any]
    artifact_dir: Path
    artifact_sha256: str
    artifact_bytes: int
    train_examples: int
    eval_examples: int
    steps: int
    seconds: float
    seconds_per_step: float
    device: str
    metrics: dict[str, float]
    config: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Return the result as JSON-able values (what ``RUN_FILE`` and the CLI print)."""
        body = asdict(self)
        body["method"] = self.method.value
        body["artifact_dir"] = str(self.artifact_dir)
        return body


@dataclass(frozen=True)
class LoadedDataset:
    """An export's rows and where they came from (``manifest`` is ``{}`` for a bare file)."""

    rows: list[dict[str, Any]]
    path: Path
    sha256: str
    manifest: dict[str, Any]


def read_dataset(path: Path, method: Method) -> LoadedDataset:
    """Read an export's rows for ``method``: an export directory (its manifest names the
    JSONL; the manifest's kind must be ``method`` and its hash match), a ``.jsonl`` or a
    ``.parquet`` file. Raises ``FinetuneError`` naming the file (and line) that is missing,
    malformed or not of ``method``'s kind."""
    manifest: dict[str, Any] = {}
    if path.is_dir():
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise FinetuneError(f"dataset {path}: no {MANIFEST} (not a dukenet export)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise FinetuneError(f"dataset {manifest_path}: unreadable manifest: {exc}") from exc
        if manifest.get("kind") != method.value:
            raise FinetuneError(
                f"dataset {path}: a {manifest.get('kind')!r} export, not {method.value!r}"
            )
        data_path = path / str((manifest.get("files") or {}).get("jsonl", f"{method}.jsonl"))
    elif path.is_file():
        data_path = path
    else:
        raise FinetuneError(f"dataset {path}: no such file or directory")
    try:
        raw = data_path.read_bytes()
    except OSError as exc:
        raise FinetuneError(f"dataset {data_path}: cannot be read: {exc}") from exc
    sha256 = hashlib.sha256(raw).hexdigest()
    if manifest and manifest.get("sha256") not in (None, sha256):
        raise FinetuneError(f"dataset {data_path}: its content does not match the manifest's hash")
    if data_path.suffix == ".parquet":
        rows = _parquet_rows(data_path)
    else:
        rows = _jsonl_rows(data_path, raw)
    columns = REQUIRED_COLUMNS[method]
    for number, row in enumerate(rows, start=1):
        missing = [c for c in columns if not row.get(c)]
        if missing:
            raise FinetuneError(
                f"dataset {data_path}: row {number} has no {missing[0]!r} "
                f"(a {method.value} row has {', '.join(columns)})"
            )
    return LoadedDataset(rows=rows, path=data_path, sha256=sha256, manifest=manifest)


def split_rows(
    rows: Sequence[dict[str, Any]], method: Method, *, eval_share: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``rows`` into (train, held-out) by prompt: every row of one prompt lands on the
    same side; ``eval_share`` of the prompts (at least one) are held out, chosen by ``seed``.
    Raises ``FinetuneError`` when there are fewer than two distinct prompts."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_prompt_key(row, method), []).append(row)
    if len(groups) < 2:
        raise FinetuneError(
            f"dataset too small to hold out a test split: {len(rows)} rows over "
            f"{len(groups)} distinct prompts (at least 2 prompts are needed)"
        )
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    n_eval = min(len(keys) - 1, max(1, round(len(keys) * eval_share)))
    held = set(keys[:n_eval])
    train = [r for r in rows if _prompt_key(r, method) not in held]
    heldout = [r for r in rows if _prompt_key(r, method) in held]
    return train, heldout


def train_sft(
    dataset: Path,
    output_dir: Path,
    *,
    base: str | Path = SMOLLM2,
    config: TrainConfig | None = None,
) -> TrainResult:
    """Fine-tune ``base`` with TRL's ``SFTTrainer`` (LoRA) on an SFT export's ``messages``
    and save the adapter under ``output_dir`` (which must not exist). Blocking: call it in
    a worker thread or process. Raises ``FinetuneError`` (see the module)."""
    return _train(Method.SFT, dataset, output_dir, base=base, config=config or TrainConfig())


def train_dpo(
    dataset: Path,
    output_dir: Path,
    *,
    base: str | Path = SMOLLM2,
    config: TrainConfig | None = None,
) -> TrainResult:
    """Fine-tune ``base`` with TRL's ``DPOTrainer`` (LoRA; the reference model is the base,
    the adapter switched off) on a DPO export's ``prompt``/``chosen``/``rejected`` pairs and
    save the adapter under ``output_dir`` (which must not exist). Blocking. Raises
    ``FinetuneError`` (see the module)."""
    return _train(Method.DPO, dataset, output_dir, base=base, config=config or TrainConfig())


def _train(
    method: Method, dataset: Path, output_dir: Path, *, base: str | Path, config: TrainConfig
) -> TrainResult:
    if output_dir.exists():
        raise FinetuneError(f"output {output_dir} already exists")
    source = resolve_base(base)  # a bad spec fails before the dataset is read
    loaded = read_dataset(dataset, method)
    train_rows, eval_rows = split_rows(
        loaded.rows, method, eval_share=config.eval_share, seed=config.seed
    )
    device = config.device or default_device()
    partial = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with _out_of_memory_named(device):
            model, tokenizer = load_base(base, device=device, seed=config.seed)
            metrics, steps, seconds, tuned = _fit(
                method, model, tokenizer, train_rows, eval_rows, config, device, partial
            )
            save_adapter(tuned, tokenizer, partial, base=source, seed=config.seed)
        with (partial / HELDOUT_FILE).open("w", encoding="utf-8") as f:
            for row in eval_rows:
                f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        summary = {
            "method": method.value,
            "base": source.describe(),
            "config": asdict(config),
            "dataset": _dataset_summary(loaded),
            "train_examples": len(train_rows),
            "eval_examples": len(eval_rows),
            "metrics": metrics,
        }
        (partial / RUN_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
        sha256, size = directory_sha256(partial), directory_bytes(partial)
        partial.rename(output_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return TrainResult(
        method=method,
        base=source.describe(),
        artifact_dir=output_dir,
        artifact_sha256=sha256,
        artifact_bytes=size,
        train_examples=len(train_rows),
        eval_examples=len(eval_rows),
        steps=steps,
        seconds=seconds,
        seconds_per_step=seconds / steps if steps else 0.0,
        device=device,
        metrics=metrics,
        config=asdict(config),
        dataset=_dataset_summary(loaded),
    )


def _fit(
    method: Method,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    config: TrainConfig,
    device: str,
    scratch: Path,
) -> tuple[dict[str, float], int, float, PeftModel]:
    """Train the adapter; return (metrics, optimizer steps, training seconds, the base with
    its trained adapter)."""
    from peft import LoraConfig
    from transformers.utils import logging as hf_logging

    from datasets import Dataset  # type: ignore[import-untyped]

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    common: dict[str, Any] = {
        "output_dir": str(scratch.with_name(scratch.name + ".trainer")),
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "max_length": config.max_length,
        "seed": config.seed,
        "data_seed": config.seed,
        "bf16": False,
        "fp16": False,
        "activation_checkpointing": False,
        "use_cpu": device == "cpu",
        "report_to": [],
        "save_strategy": "no",
        "eval_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "dataset_num_proc": None,
    }
    peft_config = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    train_ds, eval_ds = Dataset.from_list(train_rows), Dataset.from_list(eval_rows)
    trainer: Any
    if method is Method.SFT:
        from trl import SFTConfig, SFTTrainer  # type: ignore[attr-defined]

        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**common),
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    else:
        from trl import DPOConfig, DPOTrainer  # type: ignore[attr-defined]

        trainer = DPOTrainer(
            model=model,
            ref_model=None,
            args=DPOConfig(**common, beta=config.beta),
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # stdout is the CLI's JSON; figures are returned
    for split, data in (("training", trainer.train_dataset), ("held-out", trainer.eval_dataset)):
        if len(data) == 0:
            raise FinetuneError(
                f"every {split} example is longer than max_length={config.max_length} tokens "
                "(TRL drops them): raise --max-length"
            )
    try:
        before = trainer.evaluate()
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
        after = trainer.evaluate()
    finally:
        shutil.rmtree(common["output_dir"], ignore_errors=True)
    metrics = {"train_loss": float(output.training_loss)}
    metrics.update(_eval_metrics(method, before, "before"))
    metrics.update(_eval_metrics(method, after, "after"))
    tuned: PeftModel = trainer.model
    tuned.eval()
    return metrics, int(output.global_step), seconds, tuned


def _eval_metrics(method: Method, figures: dict[str, float], when: str) -> dict[str, float]:
    names = {"eval_loss": "eval_loss"}
    if method is Method.DPO:
        names |= {
            "eval_rewards/accuracies": "eval_preference_accuracy",
            "eval_rewards/margins": "eval_reward_margin",
        }
    return {f"{ours}_{when}": float(figures[theirs]) for theirs, ours in names.items()}


@contextlib.contextmanager
def _out_of_memory_named(device: str) -> Iterator[None]:
    """Turn an out-of-memory failure (host or GPU) into a ``FinetuneError`` naming it."""
    try:
        yield
    except MemoryError as exc:
        raise FinetuneError(
            f"out of memory on the host while fine-tuning on {device}: lower --max-length, "
            "the batch size or use a smaller base"
        ) from exc
    except RuntimeError as exc:
        if "out of memory" not in str(exc).lower():
            raise
        raise FinetuneError(
            f"out of memory on {device} while fine-tuning: lower --max-length, the batch size "
            f"or use a smaller base ({exc})"
        ) from exc


def _prompt_key(row: dict[str, Any], method: Method) -> str:
    if method is Method.DPO:
        return json.dumps(row["prompt"], sort_keys=True)
    users = [m for m in row["messages"] if isinstance(m, dict) and m.get("role") != "assistant"]
    return json.dumps(users, sort_keys=True)


def _jsonl_rows(path: Path, raw: bytes) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise FinetuneError(f"dataset {path}: line {number} is not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise FinetuneError(f"dataset {path}: line {number} is not a JSON object")
        rows.append(row)
    return rows


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except ImportError as exc:
        raise FinetuneError(
            "reading Parquet needs pyarrow: pip install 'dukenet[parquet]'"
        ) from exc
    except Exception as exc:
        raise FinetuneError(f"dataset {path}: not a readable Parquet file: {exc}") from exc
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _dataset_summary(loaded: LoadedDataset) -> dict[str, Any]:
    return {
        "path": str(loaded.path),
        "sha256": loaded.sha256,
        "rows": len(loaded.rows),
        "manifest_sha256": loaded.manifest.get("sha256"),
    }
