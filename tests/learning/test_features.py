"""Tests of the hashing featurizer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from dukenet.learning.features import HashingFeaturizer, TaskFeatures


class TestTransform:
    def test_shape_type_and_extra_columns(self) -> None:
        featurizer = HashingFeaturizer(n_features=2**10)
        tasks = [TaskFeatures("Write a python function to sort a list", 6), TaskFeatures("", 1)]
        x = featurizer.transform(tasks)
        assert sp.issparse(x) and x.format == "csr"
        assert x.shape == (2, 2**10 + 2) == (2, featurizer.n_columns)
        extra = x[:, 2**10 :].toarray()
        assert extra[0, 0] == pytest.approx(0.6)
        assert extra[0, 1] == pytest.approx(math.log1p(8) / 10)
        assert extra[1].tolist() == [pytest.approx(0.1), 0.0]
        assert x[1, : 2**10].nnz == 0

    def test_complexity_is_clipped_to_1_to_10(self) -> None:
        x = HashingFeaturizer(n_features=64).transform(
            [TaskFeatures("a", -3), TaskFeatures("a", 42)]
        )
        assert x[:, 64].toarray().ravel().tolist() == [pytest.approx(0.1), pytest.approx(1.0)]

    def test_stateless_and_deterministic(self) -> None:
        tasks = [TaskFeatures("Which gas do plants absorb? A) O2 B) CO2", 3)]
        a = HashingFeaturizer(n_features=2**12).transform(tasks)
        b = HashingFeaturizer(n_features=2**12).transform(tasks)
        assert (a != b).nnz == 0

    def test_text_block_has_unit_norm_and_separates_texts(self) -> None:
        featurizer = HashingFeaturizer(n_features=2**14)
        x = featurizer.transform(
            [
                TaskFeatures("write a python function", 5),
                TaskFeatures("write a python function", 5),
                TaskFeatures("answer the multiple choice question", 5),
            ]
        )
        text = x[:, : 2**14].toarray()
        np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0)
        assert text[0] @ text[1] == pytest.approx(1.0)
        assert text[0] @ text[2] < 0.3

    def test_char_ngrams_make_misspellings_closer(self) -> None:
        words = HashingFeaturizer(n_features=2**14)
        chars = HashingFeaturizer(n_features=2**14, char_ngrams=True)
        tasks = [TaskFeatures("implement quicksort", 5), TaskFeatures("implemnt quiksort", 5)]

        def cosine(f: HashingFeaturizer) -> float:
            t = f.transform(tasks)[:, : 2**14].toarray()
            return float(t[0] @ t[1] / (np.linalg.norm(t[0]) * np.linalg.norm(t[1])))

        assert cosine(words) == pytest.approx(0.0)
        assert cosine(chars) > 0.3

    def test_rejects_tiny_width(self) -> None:
        with pytest.raises(ValueError):
            HashingFeaturizer(n_features=8)
