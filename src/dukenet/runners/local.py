"""The ``local`` agent: a model DukeNET fine-tuned itself (``dukenet finetune``), run in-process.

A local agent's configuration (``LocalAgentConfig``) names the model directory a fine-tune
wrote and that directory's SHA-256. The directory is a LoRA adapter (what ``dukenet finetune``
writes: the executor loads the base it names, checked against the base's recorded hash, and
merges the adapter in memory) or, from older fine-tunes, a merged model (``config.json``); the
files present tell which (``finetune.base_model.resolve_base``). The executor loads each model
once (cached by its hash, checked against the files on first load) and generates greedily in a
worker thread, so the event loop never waits on torch. It needs the ``finetune`` extra; a
runner without it, without the model's files or without an adapter's base claims no task for
the agent (``handles``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from dukenet.agents.models import Agent
from dukenet.runners.base import Execution, ExecutionError, WorkItem, chat_messages

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class LocalAgentConfig(BaseModel):
    """A ``local`` agent's configuration: the model directory (``artifact_path``), its content
    hash, the training run that made it, and the generation settings (``max_new_tokens``
    tokens at most; ``system_prompt`` before the buyer's messages, "" for none)."""

    model_config = ConfigDict(extra="ignore")

    artifact_path: str
    artifact_sha256: str = Field(min_length=64, max_length=64)
    training_run_id: str | None = None
    method: str | None = None
    base: str | None = None
    max_new_tokens: int = Field(default=256, gt=0, le=4096)
    system_prompt: str = ""
    shadow: bool = False


@dataclass
class _Loaded:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: str
    lock: threading.Lock  # one generation at a time per model


class LocalExecutor:
    """Runs ``local`` agents' models in this process; each model is loaded once per hash."""

    def __init__(self, *, device: str | None = None) -> None:
        self._device = device
        self._models: dict[str, _Loaded] = {}
        self._loading = asyncio.Lock()

    def handles(self, agent: Agent) -> bool:
        """Whether torch/transformers are installed, the agent's model directory exists and,
        for a LoRA adapter, the base it applies to is found here (not yet hashed)."""
        if importlib.util.find_spec("transformers") is None:
            return False
        try:
            config = LocalAgentConfig.model_validate(agent.config)
        except ValueError:
            return False
        if config.artifact_sha256 in self._models:
            return True
        return _servable(Path(config.artifact_path))

    async def execute(self, agent: Agent, item: WorkItem) -> Execution:
        """Answer the task (its chat messages, or its description as one user message, with
        the excerpts of its files) with the agent's fine-tuned model, greedily, at no cost.

        Raises:
            ExecutionError: the configuration is invalid, the model cannot be loaded, its files
                do not match the recorded hash, or it produced no text.
        """
        try:
            config = LocalAgentConfig.model_validate(agent.config)
        except ValueError as exc:
            raise ExecutionError(
                f"local agent {agent.name!r}: invalid configuration: {exc}"
            ) from exc
        loaded = await self._model(config)
        messages = chat_messages(item, config.system_prompt)
        params = (item.chat or {}).get("params") or {}
        max_new_tokens = min(int(params.get("max_tokens") or config.max_new_tokens), 4096)
        started = time.perf_counter()
        text = await asyncio.to_thread(_generate, loaded, messages, max_new_tokens)
        latency_ms = (time.perf_counter() - started) * 1000
        if not text.strip():
            raise ExecutionError(f"local agent {agent.name!r}: the model produced no text")
        if item.deltas is not None:
            item.deltas.send(text)
        return Execution(
            text=text,
            success=True,
            latency_ms=latency_ms,
            cost_usd=0.0,
            metadata={
                "artifact_sha256": config.artifact_sha256,
                "device": loaded.device,
                "max_new_tokens": max_new_tokens,
            },
        )

    async def _model(self, config: LocalAgentConfig) -> _Loaded:
        loaded = self._models.get(config.artifact_sha256)
        if loaded is not None:
            return loaded
        async with self._loading:
            loaded = self._models.get(config.artifact_sha256)
            if loaded is None:
                loaded = await asyncio.to_thread(_load, config, self._device)
                self._models[config.artifact_sha256] = loaded
        return loaded


def _servable(path: Path) -> bool:
    """Whether ``path`` is a model directory whose base (for an adapter) is found here."""
    from dukenet.finetune.base_model import resolve_adapter_base, resolve_base
    from dukenet.finetune.errors import FinetuneError

    if not path.is_dir():
        return False
    try:
        if resolve_base(path).adapter:
            resolve_adapter_base(path)
    except FinetuneError:
        return False
    return True


def _load(config: LocalAgentConfig, device: str | None) -> _Loaded:
    from dukenet.finetune.base_model import default_device, directory_sha256, load_base
    from dukenet.finetune.errors import FinetuneError

    path = Path(config.artifact_path)
    if not path.is_dir():
        raise ExecutionError(f"local model {path}: no such directory")
    if directory_sha256(path) != config.artifact_sha256:
        raise ExecutionError(f"local model {path}: its files do not match the recorded hash")
    target = device or default_device()
    try:
        model, tokenizer = load_base(path, device=target)  # an adapter or a merged model
    except FinetuneError as exc:
        raise ExecutionError(f"local model {path} cannot be loaded: {exc.message}") from exc
    return _Loaded(model, tokenizer, target, threading.Lock())


def _generate(loaded: _Loaded, messages: list[dict[str, str]], max_new_tokens: int) -> str:
    import torch

    tokenizer = loaded.tokenizer
    encoded: Any = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    inputs = {k: v.to(loaded.device) for k, v in encoded.items()}
    with loaded.lock, torch.inference_mode():
        output = loaded.model.generate(  # type: ignore[operator]
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    prompt_tokens = inputs["input_ids"].shape[1]
    text = tokenizer.decode(output[0][prompt_tokens:], skip_special_tokens=True)
    return str(text).strip()
