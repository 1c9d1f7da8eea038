"""Task features for Duke: a stateless hashing featurizer (no fitting, no model download)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

MIN_COMPLEXITY = 1
MAX_COMPLEXITY = 10
N_EXTRA_FEATURES = 2
"""Dense columns appended after the hashed text block: complexity / 10 and log word count / 10."""


@dataclass(frozen=True)
class TaskFeatures:
    """What Duke knows about a task when it routes it.

    Attributes:
        description: the task text as the buyer wrote it (any length, may be empty).
        complexity: the task's complexity, an integer in 1..10 (values outside are clipped).
    """

    description: str
    complexity: int


class HashingFeaturizer:
    """Turn tasks into a sparse matrix: hashed n-grams of the text plus two dense columns.

    Stateless (the hashing trick needs no vocabulary), so training and serving build identical
    features from the same arguments and nothing has to be saved besides them.

    Columns (``n_columns = n_features + 2``):
        ``[0, n_features)``: word 1..``word_ngram_max``-grams (lower-cased, binary, unsigned unless
        ``alternate_sign``), L2-normalised; with ``char_ngrams`` the ``char_wb`` 3..5-grams are
        hashed into the same block, each part L2-normalised and the sum scaled by 1/sqrt(2). Empty
        text gives an all-zero block.
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
    def n_columns(self) -> int:
        """Number of columns that ``transform`` returns: ``n_features + 2``."""
        return self.n_features + N_EXTRA_FEATURES

    def transform(self, tasks: Sequence[TaskFeatures]) -> sp.csr_matrix:
        """Featurize tasks into a CSR matrix of shape ``(len(tasks), n_features + 2)``, float64."""
        if not tasks:
            return sp.csr_matrix((0, self.n_columns), dtype=np.float64)
        texts = [task.description for task in tasks]
        text_block = self._words.transform(texts)
        if self.char_ngrams:
            text_block = (text_block + self._chars.transform(texts)) * (1.0 / math.sqrt(2.0))
        extra = np.empty((len(tasks), N_EXTRA_FEATURES), dtype=np.float64)
        for row, task in enumerate(tasks):
            complexity = min(max(int(task.complexity), MIN_COMPLEXITY), MAX_COMPLEXITY)
            extra[row, 0] = complexity / 10.0
            extra[row, 1] = math.log1p(len(task.description.split())) / 10.0
        matrix = sp.hstack([text_block, sp.csr_matrix(extra)], format="csr", dtype=np.float64)
        return sp.csr_matrix(matrix)
