"""Task features for Duke: one small ``Featurizer`` interface and its dependency-free default.

Two featurizers produce the same layout, a text block followed by ``N_EXTRA_FEATURES`` dense
columns (complexity, length), so the router is written once for both:

- ``"hashing"`` (``HashingFeaturizer``, here): hashed word (and optionally char) n-grams; stateless,
  no fitting, no model, no extra dependency. The default.
- ``"embedding"`` (``dukenet.learning.embedding.EmbeddingFeaturizer``): a sentence embedding from a
  small static encoder shipped inside the ``wordllama`` wheel (the ``embeddings`` extra).

``FEATURIZERS`` names them; ``RouterConfig.features`` picks one and is saved with the artifact.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

MIN_COMPLEXITY = 1
MAX_COMPLEXITY = 10
N_EXTRA_FEATURES = 2
"""Dense columns appended after the text block: complexity / 10 and log word count / 10."""

FEATURIZERS: tuple[str, ...] = ("hashing", "embedding")
"""Names accepted by ``RouterConfig.features``: the default first."""

_FILE_TYPE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class TaskFeatures:
    """What Duke knows about a task when it routes it.

    Attributes:
        description: the task text as the buyer wrote it (any length, may be empty).
        complexity: the task's complexity, an integer in 1..10 (values outside are clipped).
        file_types: types of the files attached to the task (extensions or MIME subtypes such as
            ``"pdf"``, ``"csv"``); empty when it has none, which leaves the features exactly as
            they were before file types existed.
    """

    description: str
    complexity: int
    file_types: tuple[str, ...] = ()


def task_text(task: TaskFeatures) -> str:
    """Return the text a featurizer reads: the description, then one ``filetype_<type>`` token
    per distinct attached file type (sorted, lower-cased, non-alphanumerics dropped) on a last
    line; the bare description when the task has no files."""
    kinds = sorted({_FILE_TYPE.sub("", kind.lower()) for kind in task.file_types} - {""})
    if not kinds:
        return task.description
    return task.description + "\n" + " ".join(f"filetype_{kind}" for kind in kinds)


def extra_columns(tasks: Sequence[TaskFeatures]) -> np.ndarray:
    """Return the dense extra block, shape ``(len(tasks), N_EXTRA_FEATURES)``, float64:
    complexity / 10 (complexity clipped to 1..10) and log(1 + words of the description) / 10."""
    extra = np.empty((len(tasks), N_EXTRA_FEATURES), dtype=np.float64)
    for row, task in enumerate(tasks):
        complexity = min(max(int(task.complexity), MIN_COMPLEXITY), MAX_COMPLEXITY)
        extra[row, 0] = complexity / 10.0
        extra[row, 1] = math.log1p(len(task.description.split())) / 10.0
    return extra


@runtime_checkable
class Featurizer(Protocol):
    """Turns tasks into a CSR matrix: ``n_text_columns`` text columns, then the extra block.

    Implementations are deterministic (the same task always gives the same row, whatever else is
    in the batch) and need no fitting, so training and serving build identical features from the
    ``RouterConfig`` alone.
    """

    @property
    def n_text_columns(self) -> int:
        """Width of the text block (the first columns)."""
        ...

    @property
    def n_columns(self) -> int:
        """Number of columns that ``transform`` returns: ``n_text_columns + N_EXTRA_FEATURES``."""
        ...

    def transform(self, tasks: Sequence[TaskFeatures]) -> sp.csr_matrix:
        """Featurize tasks: CSR float64 of shape ``(len(tasks), n_columns)``."""
        ...


class HashingFeaturizer:
    """Turn tasks into a sparse matrix: hashed n-grams of the text plus two dense columns.

    Stateless (the hashing trick needs no vocabulary), so training and serving build identical
    features from the same arguments and nothing has to be saved besides them.

    Columns (``n_columns = n_features + 2``):
        ``[0, n_features)``: word 1..``word_ngram_max``-grams of ``task_text`` (lower-cased,
        binary, unsigned unless ``alternate_sign``), L2-normalised; with ``char_ngrams`` the
        ``char_wb`` 3..5-grams are hashed into the same block, each part L2-normalised and the sum
        scaled by 1/sqrt(2). Empty text gives an all-zero block.
        ``n_features``: complexity / 10 (complexity clipped to 1..10).
        ``n_features + 1``: log(1 + number of words) / 10.
    """

    def __init__(
        self,
        n_features: int = 2**18,
        *,
        word_ngram_max: int = 2,
        char_ngrams: bool = False,
        alternate_sign: bool = False,
    ) -> None:
        """Configure the featurizer; ``n_features`` is the hashed block's width (a power of 2)."""
        if n_features < 16:
            raise ValueError("n_features must be at least 16")
        if word_ngram_max < 1:
            raise ValueError("word_ngram_max must be at least 1")
        self.n_features = n_features
        self.word_ngram_max = word_ngram_max
        self.char_ngrams = char_ngrams
        self.alternate_sign = alternate_sign
        self._words = HashingVectorizer(
            n_features=n_features,
            ngram_range=(1, word_ngram_max),
            alternate_sign=alternate_sign,
            binary=True,
            norm="l2",
            lowercase=True,
            dtype=np.float64,
        )
        self._chars = HashingVectorizer(
            n_features=n_features,
            analyzer="char_wb",
            ngram_range=(3, 5),
            alternate_sign=alternate_sign,
            binary=True,
            norm="l2",
            lowercase=True,
            dtype=np.float64,
        )

    @property
    def n_text_columns(self) -> int:
        """Width of the hashed text block: ``n_features``."""
        return self.n_features

    @property
    def n_columns(self) -> int:
        """Number of columns that ``transform`` returns: ``n_features + 2``."""
        return self.n_features + N_EXTRA_FEATURES

    def transform(self, tasks: Sequence[TaskFeatures]) -> sp.csr_matrix:
        """Featurize tasks into a CSR matrix of shape ``(len(tasks), n_features + 2)``, float64."""
        if not tasks:
            return sp.csr_matrix((0, self.n_columns), dtype=np.float64)
        texts = [task_text(task) for task in tasks]
        text_block = self._words.transform(texts)
        if self.char_ngrams:
            text_block = (text_block + self._chars.transform(texts)) * (1.0 / math.sqrt(2.0))
        extra = extra_columns(tasks)
        matrix = sp.hstack([text_block, sp.csr_matrix(extra)], format="csr", dtype=np.float64)
        return sp.csr_matrix(matrix)
