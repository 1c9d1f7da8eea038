"""SFT and DPO on a tiny random Llama on the CPU from real exports: one TRL step each writes a
LoRA adapter (with its tokenizer and its base's reference) whose hash, size, held-out split and
figures are recorded, loaded back as the merged model; bad input names the problem and writes
nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dukenet.finetune.base_model import BASE_FILE, directory_bytes, load_base
from dukenet.finetune.errors import FinetuneError
from dukenet.finetune.trainer import (
    HELDOUT_FILE,
    RUN_FILE,
    Method,
    TrainConfig,
    TrainResult,
    _out_of_memory_named,
    directory_sha256,
    train_dpo,
    train_sft,
)
from tests.finetune.exports import FAST, write_export

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exports")
    for kind in ("sft", "dpo"):
        write_export(kind, root / kind, questions=3)
        write_export(kind, root / f"{kind}-one-question", questions=1)
    return root


@pytest.fixture(scope="module")
def sft_run(exports: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("sft") / "model"
    # a large step and seed 1, so that the adapter visibly moves the model and a base rebuilt
    # with the default seed 0 would not be the one it was trained on
    config = TrainConfig(**{**FAST, "learning_rate": 0.05, "seed": 1})
    return train_sft(exports / "sft", out, base="tiny-random", config=config)


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out: torch.Tensor = model(input_ids=ids).logits
        return out


def _prompts(rows: list[dict[str, object]], key: str) -> set[str]:
    return {json.dumps(r[key], sort_keys=True) for r in rows}


class TestSft:
    def test_one_step_writes_a_lora_adapter_with_its_figures(
        self, sft_run: TrainResult, exports: Path
    ) -> None:
        assert sft_run.method is Method.SFT and sft_run.steps == 1 and sft_run.device == "cpu"
        assert sft_run.train_examples == 4 and sft_run.eval_examples == 2  # 3 questions: 2 + 1
        assert sft_run.seconds_per_step > 0
        for name in ("eval_loss_before", "eval_loss_after", "train_loss"):
            assert sft_run.metrics[name] > 0
        art = sft_run.artifact_dir
        assert (art / "adapter_model.safetensors").is_file() and (art / "tokenizer.json").is_file()
        assert (art / "adapter_config.json").is_file()
        assert not (art / "model.safetensors").exists() and not (art / "config.json").exists()
        assert not art.with_name(art.name + ".partial").exists()
        assert directory_sha256(art) == sft_run.artifact_sha256
        assert directory_bytes(art) == sft_run.artifact_bytes
        base = json.loads((art / BASE_FILE).read_text())
        assert base["spec"] == "tiny-random" and base["seed"] == 1
        manifest = json.loads((exports / "sft" / "manifest.json").read_text())
        assert sft_run.dataset["sha256"] == manifest["sha256"]
        recorded = json.loads((art / RUN_FILE).read_text())
        assert recorded["metrics"] == sft_run.metrics and recorded["base"]["spec"] == "tiny-random"
        model, tokenizer = load_base(art)  # a fine-tune is itself a base (SFT, then DPO)
        assert model.config.model_type == "llama" and tokenizer.chat_template

    def test_the_adapter_loads_merged_into_the_base_it_was_trained_on(
        self, sft_run: TrainResult
    ) -> None:
        from peft import PeftModel

        ids = torch.tensor([[1, 42, 314, 2718, 99]])
        merged, _ = load_base(sft_run.artifact_dir, device="cpu")  # its recorded seed, not 0
        assert not any("lora" in name for name, _ in merged.named_parameters())
        base, _ = load_base("tiny-random", device="cpu", seed=1)
        base_logits = _logits(base, ids)
        unmerged = PeftModel.from_pretrained(base, str(sft_run.artifact_dir))
        assert torch.allclose(_logits(merged, ids), _logits(unmerged, ids), atol=1e-5)
        assert not torch.allclose(_logits(merged, ids), base_logits, atol=1e-3)

    def test_an_adapter_whose_base_changed_is_refused(self, exports: Path, tmp_path: Path) -> None:
        base_dir = tmp_path / "base"
        model, tokenizer = load_base("tiny-random", device="cpu", seed=2)
        model.save_pretrained(str(base_dir))
        tokenizer.save_pretrained(str(base_dir))
        result = train_sft(
            exports / "sft", tmp_path / "tuned", base=base_dir, config=TrainConfig(**FAST)
        )
        recorded = json.loads((result.artifact_dir / BASE_FILE).read_text())
        assert recorded["spec"] == str(base_dir.resolve())
        assert recorded["sha256"] == directory_sha256(base_dir)
        load_base(result.artifact_dir, device="cpu")
        other, _ = load_base("tiny-random", device="cpu", seed=3)
        other.save_pretrained(str(base_dir))  # same shapes, other weights
        with pytest.raises(FinetuneError, match="not the one it was trained on"):
            load_base(result.artifact_dir, device="cpu")

    def test_the_adapter_is_a_small_fraction_of_the_merged_model(
        self, sft_run: TrainResult, tmp_path: Path
    ) -> None:
        merged, _ = load_base(sft_run.artifact_dir, device="cpu")
        merged.save_pretrained(str(tmp_path / "merged"))  # what fine-tunes used to write
        adapter_weights = (sft_run.artifact_dir / "adapter_model.safetensors").stat().st_size
        assert adapter_weights * 20 < (tmp_path / "merged" / "model.safetensors").stat().st_size

    def test_held_out_prompts_are_never_trained_on(self, sft_run: TrainResult) -> None:
        lines = (sft_run.artifact_dir / HELDOUT_FILE).read_text().splitlines()
        held = [json.loads(line) for line in lines]
        assert len(held) == sft_run.eval_examples
        all_rows = [
            json.loads(line) for line in Path(sft_run.dataset["path"]).read_text().splitlines()
        ]
        users = [{"u": r["messages"][0]} for r in all_rows]
        held_users = _prompts([{"u": r["messages"][0]} for r in held], "u")
        trained = [u for u in users if json.dumps(u["u"], sort_keys=True) not in held_users]
        assert len(trained) == sft_run.train_examples


class TestDpo:
    def test_one_step_records_held_out_preference_accuracy(
        self, exports: Path, tmp_path: Path
    ) -> None:
        result = train_dpo(
            exports / "dpo" / "dpo.parquet",
            tmp_path / "dpo",
            base="tiny-random",
            config=TrainConfig(**FAST),
        )
        assert result.method is Method.DPO and result.steps == 1
        assert result.train_examples == 2 and result.eval_examples == 1
        for when in ("before", "after"):
            assert 0.0 <= result.metrics[f"eval_preference_accuracy_{when}"] <= 1.0
            assert result.metrics[f"eval_loss_{when}"] > 0
        # before any step the adapter is zero: the policy is the reference, every reward 0
        assert result.metrics["eval_reward_margin_before"] == 0.0
        assert directory_sha256(result.artifact_dir) == result.artifact_sha256
        assert (result.artifact_dir / "adapter_model.safetensors").is_file()
        assert not (result.artifact_dir / "model.safetensors").exists()
        model, _ = load_base(result.artifact_dir, device="cpu")
        assert model.config.model_type == "llama"


class TestBadInput:
    @pytest.mark.parametrize("kind", ["sft", "dpo"])
    def test_a_dataset_too_small_to_hold_out_a_split_is_refused(
        self, exports: Path, tmp_path: Path, kind: str
    ) -> None:
        train = train_sft if kind == "sft" else train_dpo
        with pytest.raises(FinetuneError, match="too small to hold out a test split"):
            train(exports / f"{kind}-one-question", tmp_path / "m", base="tiny-random")
        assert list(tmp_path.iterdir()) == []

    def test_an_empty_export_is_too_small(self, tmp_path: Path) -> None:
        from dukenet.datasets import service
        from dukenet.datasets.formats import DatasetKind

        empty = service.build(DatasetKind.DPO, [], service.DatasetFilters())
        service.write(empty, tmp_path / "empty", parquet=False)
        with pytest.raises(FinetuneError, match="0 rows"):
            train_dpo(tmp_path / "empty", tmp_path / "m", base="tiny-random")

    @pytest.mark.parametrize(
        ("base", "problem"),
        [
            ("/no/such/model", "not 'smollm2', 'tiny-random' or an existing directory"),
            ("{tmp}", "holds no config.json and no .gguf files"),
            ("{tmp}/broken", "cannot be loaded"),
        ],
    )
    def test_a_base_it_cannot_load_is_named(
        self, exports: Path, tmp_path: Path, base: str, problem: str
    ) -> None:
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "config.json").write_text('{"model_type": "llama"}')
        spec = base.format(tmp=tmp_path / "empty") if base == "{tmp}" else base
        if base == "{tmp}":
            (tmp_path / "empty").mkdir()
        spec = spec.format(tmp=tmp_path)
        with pytest.raises(FinetuneError, match="base model") as info:
            train_sft(exports / "sft", tmp_path / "m", base=spec, config=TrainConfig(**FAST))
        assert problem in str(info.value)
        assert not (tmp_path / "m").exists()

    def test_an_adapter_that_names_no_base_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "adapter_config.json").write_text("{}")
        with pytest.raises(FinetuneError, match=f"without {BASE_FILE}"):
            load_base(tmp_path)
        (tmp_path / BASE_FILE).write_text('{"spec": "/no/such/base", "sha256": "0"}')
        with pytest.raises(FinetuneError, match="not 'smollm2', 'tiny-random' or an existing"):
            load_base(tmp_path)

    def test_the_wrong_kind_of_export_is_named(self, exports: Path, tmp_path: Path) -> None:
        with pytest.raises(FinetuneError, match="a 'sft' export, not 'dpo'"):
            train_dpo(exports / "sft", tmp_path / "m", base="tiny-random")

    def test_a_malformed_line_is_named(self, tmp_path: Path) -> None:
        data = tmp_path / "sft.jsonl"
        data.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
        with pytest.raises(FinetuneError, match="line 2 is not JSON"):
            train_sft(data, tmp_path / "m", base="tiny-random")
        data.write_text('{"prompt": "no messages"}\n')
        with pytest.raises(FinetuneError, match="row 1 has no 'messages'"):
            train_sft(data, tmp_path / "m", base="tiny-random")

    def test_an_edited_export_no_longer_matches_its_manifest(
        self, exports: Path, tmp_path: Path
    ) -> None:
        import shutil

        copy = tmp_path / "sft"
        shutil.copytree(exports / "sft", copy)
        with (copy / "sft.jsonl").open("a") as f:
            f.write('{"messages": [{"role": "user", "content": "added later"}]}\n')
        with pytest.raises(FinetuneError, match="does not match the manifest's hash"):
            train_sft(copy, tmp_path / "m", base="tiny-random")

    @pytest.mark.parametrize(
        ("setting", "value"), [("lora_r", 0), ("eval_share", 1.0), ("max_steps", 0)]
    )
    def test_invalid_settings_are_named(self, setting: str, value: float) -> None:
        with pytest.raises(FinetuneError, match=f"invalid training setting {setting}="):
            TrainConfig(**{setting: value})  # type: ignore[arg-type]

    def test_an_existing_output_is_never_overwritten(self, exports: Path, tmp_path: Path) -> None:
        (tmp_path / "m").mkdir()
        with pytest.raises(FinetuneError, match="already exists"):
            train_sft(exports / "sft", tmp_path / "m", base="tiny-random")


class TestOutOfMemory:
    """Running out of memory is named (a real OOM cannot be provoked safely on a shared CI
    machine, so the errors torch raises are raised here as torch raises them)."""

    @pytest.mark.parametrize(
        ("error", "device"),
        [
            (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "cuda"),
            (MemoryError(), "cpu"),
        ],
    )
    def test_an_out_of_memory_error_is_named(self, error: BaseException, device: str) -> None:
        with (
            pytest.raises(FinetuneError, match="out of memory") as info,
            _out_of_memory_named(device),
        ):
            raise error
        assert "--max-length" in info.value.message

    def test_other_errors_pass_through(self) -> None:
        with pytest.raises(RuntimeError, match="shape mismatch"), _out_of_memory_named("cpu"):
            raise RuntimeError("shape mismatch")
