"""Sentence-embedding featurizer: WordLlama's static encoder, shipped inside its wheel.

WordLlama (``wordllama`` on PyPI, MIT) is a static token-embedding model distilled from Llama 2's
embedding table (``l2_supercat``, 32,000 tokens x 256 dims, float16, 16 MB): a text's embedding is
the mean of its tokens' vectors (Matryoshka-trained, so the first 64 or 128 dims are an embedding
too). The weights and the tokenizer are files *inside the wheel*; this module opens those files
directly and never calls ``WordLlama.load``, whose lookup can fall back to a Hugging Face download.
Nothing is fetched at run time.

Optional: install the ``embeddings`` extra (``pip install 'dukenet[embeddings]'``). Importing this
module needs nothing beyond the core dependencies; the encoder is loaded on the first
``transform`` and ``MissingExtraError`` says what to install when it is absent.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np
import scipy.sparse as sp

from dukenet.learning.features import N_EXTRA_FEATURES, TaskFeatures, extra_columns, task_text

WEIGHTS_FILE = ("weights", "l2_supercat_256.safetensors")
TOKENIZER_FILE = ("tokenizers", "l2_supercat_tokenizer_config.json")
"""Paths inside the ``wordllama`` package of the encoder's weights and tokenizer."""

MAX_DIM = 256
"""Width of the shipped encoder; ``dim`` may truncate it (Matryoshka)."""

BATCH_SIZE = 64


class MissingExtraError(ImportError):
    """The ``embeddings`` extra (``wordllama``) is not installed."""


def embeddings_available() -> bool:
    """Return True when the ``embeddings`` extra is installed (without loading the encoder)."""
    try:
        _load_packaged_encoder(dim=16, probe=True)
    except MissingExtraError:
        return False
    return True


class EmbeddingFeaturizer:
    """Turn tasks into a CSR matrix: a dense sentence embedding plus two dense columns.

    Columns (``n_columns = dim + 2``):
        ``[0, dim)``: the mean of the token embeddings of ``task_text`` (the first ``dim`` of the
        encoder's 256 dims), L2-normalised; an all-zero block for an empty text.
        ``dim``: complexity / 10 (complexity clipped to 1..10).
        ``dim + 1``: log(1 + number of words) / 10.

    Deterministic and stateless apart from the encoder, which is loaded on the first
    ``transform`` (about 0.5 s) and kept by this instance. Throughput: about 1,000 prompts of
    2,400 characters a second on one core.
    """

    def __init__(self, dim: int = MAX_DIM) -> None:
        """Configure the featurizer; ``dim`` is the embedding width kept, 16..256."""
        if not 16 <= dim <= MAX_DIM:
            raise ValueError(f"dim must be in 16..{MAX_DIM}")
        self.dim = dim
        self._encoder: Any = None
        self._lock = threading.Lock()

    @property
    def n_text_columns(self) -> int:
        """Width of the embedding block: ``dim``."""
        return self.dim

    @property
    def n_columns(self) -> int:
        """Number of columns that ``transform`` returns: ``dim + 2``."""
        return self.dim + N_EXTRA_FEATURES

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return unit-norm embeddings of texts, shape ``(len(texts), dim)``, float64 (zero rows
        for texts without tokens).

        Raises:
            MissingExtraError: the ``embeddings`` extra is not installed.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float64)
        encoder = self._get_encoder()
        raw = encoder.embed(list(texts), norm=False, batch_size=BATCH_SIZE)
        vectors = np.asarray(raw, dtype=np.float64)[:, : self.dim]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        safe = np.where(norms > 0.0, norms, 1.0)
        return np.where(norms > 0.0, vectors / safe, 0.0)

    def transform(self, tasks: Sequence[TaskFeatures]) -> sp.csr_matrix:
        """Featurize tasks into a CSR matrix of shape ``(len(tasks), dim + 2)``, float64.

        Raises:
            MissingExtraError: the ``embeddings`` extra is not installed.
        """
        if not tasks:
            return sp.csr_matrix((0, self.n_columns), dtype=np.float64)
        dense = np.hstack([self.embed([task_text(t) for t in tasks]), extra_columns(tasks)])
        return sp.csr_matrix(dense, dtype=np.float64)

    def _get_encoder(self) -> Any:
        with self._lock:
            if self._encoder is None:
                self._encoder = _load_packaged_encoder(dim=self.dim)
            return self._encoder


def _load_packaged_encoder(*, dim: int, probe: bool = False) -> Any:
    """Open the encoder shipped in the ``wordllama`` wheel (weights truncated to ``dim``).

    With ``probe``, only check that the package and its two files are there; return None.

    Raises:
        MissingExtraError: ``wordllama`` (or a file it should ship) is missing.
    """
    hint = (
        "the embedding featurizer needs the 'embeddings' extra: pip install 'dukenet[embeddings]'"
    )
    try:
        from safetensors import safe_open
        from tokenizers import Tokenizer
        from wordllama.inference import WordLlamaInference
    except ImportError as exc:
        raise MissingExtraError(f"{hint} ({exc})") from exc
    root = resources.files("wordllama")
    weights, tokenizer = root.joinpath(*WEIGHTS_FILE), root.joinpath(*TOKENIZER_FILE)
    if not (weights.is_file() and tokenizer.is_file()):
        raise MissingExtraError(f"{hint} (the installed wordllama does not ship its weights)")
    if probe:
        return None
    with (
        resources.as_file(weights) as weights_path,
        safe_open(str(weights_path), framework="np") as handle,
    ):
        table = np.asarray(handle.get_tensor("embedding.weight"))[:, :dim]
    with resources.as_file(tokenizer) as tokenizer_path:
        return WordLlamaInference(table, Tokenizer.from_file(str(tokenizer_path)))
