"""Tests of the featurizers: hashing (default), sentence embedding (extra), file types, and the
featurizer choice in ``RouterConfig`` and artifacts."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import skops.io as sio

from dukenet.learning.embedding import (
    EmbeddingFeaturizer,
    MissingExtraError,
    embeddings_available,
)
from dukenet.learning.features import (
    N_EXTRA_FEATURES,
    Featurizer,
    HashingFeaturizer,
    TaskFeatures,
    task_text,
)
from dukenet.learning.router import TRUSTED_TYPES, DukeRouter, OutcomeSample, RouterConfig


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


class TestFileTypes:
    def test_no_files_gives_the_features_of_the_bare_description(self) -> None:
        featurizer = HashingFeaturizer(n_features=2**12)
        bare = featurizer.transform([TaskFeatures("summarise this report", 4)])
        empty = featurizer.transform([TaskFeatures("summarise this report", 4, ())])
        assert (bare != empty).nnz == 0
        assert task_text(TaskFeatures("summarise this report", 4)) == "summarise this report"

    def test_file_types_change_the_text_block_but_not_the_extras(self) -> None:
        featurizer = HashingFeaturizer(n_features=2**12)
        x = featurizer.transform(
            [
                TaskFeatures("summarise this report", 4),
                TaskFeatures("summarise this report", 4, ("pdf",)),
                TaskFeatures("summarise this report", 4, ("CSV", ".pdf", "pdf")),
                TaskFeatures("summarise this report", 4, ("pdf", "csv")),
            ]
        ).toarray()
        assert not np.allclose(x[0, : 2**12], x[1, : 2**12])
        np.testing.assert_allclose(x[2], x[3])  # order, case, dots and repeats do not matter
        np.testing.assert_allclose(x[:, 2**12 :], np.repeat(x[:1, 2**12 :], 4, axis=0))
        assert task_text(TaskFeatures("t", 1, ("CSV", "pdf"))) == "t\nfiletype_csv filetype_pdf"


class TestRouterConfigFeaturizer:
    def test_default_is_hashing(self) -> None:
        featurizer = RouterConfig(n_features=2**10).featurizer()
        assert isinstance(featurizer, HashingFeaturizer)
        assert isinstance(featurizer, Featurizer)
        assert featurizer.n_text_columns == 2**10
        assert featurizer.n_columns == 2**10 + N_EXTRA_FEATURES

    def test_embedding_is_built_without_loading_the_encoder(self) -> None:
        featurizer = RouterConfig(features="embedding", embedding_dim=64).featurizer()
        assert isinstance(featurizer, EmbeddingFeaturizer)
        assert isinstance(featurizer, Featurizer)
        assert (featurizer.n_text_columns, featurizer.n_columns) == (64, 66)

    @pytest.mark.parametrize(
        "overrides", [{"features": "bert"}, {"embedding_dim": 8}, {"embedding_dim": 512}]
    )
    def test_rejects_unknown_featurizer_and_bad_width(self, overrides: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            RouterConfig(**overrides)

    def test_round_trips_through_from_dict(self) -> None:
        config = RouterConfig(features="embedding", embedding_dim=128, C=0.5)
        assert RouterConfig.from_dict(asdict(config)) == config

    def test_artifact_without_the_featurizer_fields_loads_as_hashing(self, tmp_path: Path) -> None:
        config = RouterConfig(n_features=2**10, agent_n_features=16)
        router = DukeRouter.fit(_samples(), config)
        path = tmp_path / "v1.skops"
        router.save(path)
        state = sio.load(path, trusted=list(TRUSTED_TYPES))
        for key in ("features", "embedding_dim"):
            del state["config"][key]  # as written before the fields existed
        old = tmp_path / "old.skops"
        sio.dump(state, old)
        loaded = DukeRouter.load(old)
        assert loaded.config == config and loaded.config.features == "hashing"
        tasks = [TaskFeatures("write a function that sorts numbers", 5)]
        np.testing.assert_array_equal(
            loaded.predict_proba(tasks, ["coder", "quizzer"]),
            router.predict_proba(tasks, ["coder", "quizzer"]),
        )


class TestMissingExtra:
    def test_transform_says_which_extra_to_install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "wordllama.inference", None)  # import fails
        featurizer = EmbeddingFeaturizer(64)
        assert not embeddings_available()
        with pytest.raises(MissingExtraError, match=r"dukenet\[embeddings\]"):
            featurizer.transform([TaskFeatures("hello", 1)])


needs_embeddings = pytest.mark.skipif(
    not embeddings_available(), reason="the 'embeddings' extra (wordllama) is not installed"
)


@pytest.fixture(scope="module")
def featurizer() -> EmbeddingFeaturizer:
    """One embedding featurizer for the module (its encoder loads once)."""
    return EmbeddingFeaturizer()


@needs_embeddings
class TestEmbeddingFeaturizer:
    def test_shape_norm_and_extra_columns(self, featurizer: EmbeddingFeaturizer) -> None:
        tasks = [TaskFeatures("Write a python function to sort a list", 6), TaskFeatures("", 1)]
        x = featurizer.transform(tasks)
        assert sp.issparse(x) and x.format == "csr" and x.dtype == np.float64
        assert x.shape == (2, 256 + 2) == (2, featurizer.n_columns)
        dense = x.toarray()
        assert np.linalg.norm(dense[0, :256]) == pytest.approx(1.0)
        assert np.count_nonzero(dense[0, :256]) > 200  # a dense embedding, not sparse n-grams
        assert not dense[1, :256].any()  # empty text: zero block, not NaN
        assert dense[0, 256:].tolist() == [pytest.approx(0.6), pytest.approx(math.log1p(8) / 10)]
        assert featurizer.transform([]).shape == (0, 258)

    def test_deterministic_whatever_the_batch(self, featurizer: EmbeddingFeaturizer) -> None:
        task = TaskFeatures("Which gas do plants absorb? A) O2 B) CO2", 3)
        alone = featurizer.transform([task]).toarray()
        padded = featurizer.transform(
            [TaskFeatures("a much longer task " * 30, 5), task]
        ).toarray()[1:]
        fresh = EmbeddingFeaturizer().transform([task]).toarray()
        np.testing.assert_allclose(alone, padded, atol=1e-6)
        np.testing.assert_array_equal(alone, fresh)

    def test_misspellings_and_paraphrases_stay_close(self, featurizer: EmbeddingFeaturizer) -> None:
        e = featurizer.embed(
            ["implement quicksort", "implemnt quiksort", "which gas do plants absorb"]
        )
        assert e[0] @ e[1] > e[0] @ e[2] + 0.2

    def test_smaller_dim_is_the_normalised_prefix(self, featurizer: EmbeddingFeaturizer) -> None:
        text = ["answer the multiple choice question about physics"]
        full, small = featurizer.embed(text)[0], EmbeddingFeaturizer(64).embed(text)[0]
        np.testing.assert_allclose(small, full[:64] / np.linalg.norm(full[:64]), atol=1e-6)

    def test_router_fits_saves_and_loads_with_it(self, tmp_path: Path) -> None:
        config = RouterConfig(features="embedding", embedding_dim=64, agent_n_features=16)
        samples = _samples()
        router = DukeRouter.fit(samples, config)
        path = tmp_path / "v1.skops"
        router.save(path)
        loaded = DukeRouter.load(path)
        assert loaded.config.features == "embedding"
        tasks = [TaskFeatures("write a function that sorts numbers", 5)]
        p = loaded.predict_proba(tasks, ["coder", "quizzer"])
        np.testing.assert_array_equal(p, router.predict_proba(tasks, ["coder", "quizzer"]))
        assert p[0, 0] > p[0, 1]  # it learned that the coder codes


def _samples() -> list[OutcomeSample]:
    """Coder succeeds on code tasks, quizzer on quizzes (deterministic)."""
    verbs = ["sort", "reverse", "parse", "merge", "count", "filter"]
    nouns = ["numbers", "strings", "dates", "files", "prices", "words"]
    samples = []
    for i in range(36):
        code = f"write a python function that will {verbs[i % 6]} {nouns[i // 6]}"
        quiz = f"which answer is right about {nouns[i % 6]} and {verbs[i // 6]}? A) yes B) no"
        for agent in ("coder", "quizzer"):
            samples.append(OutcomeSample(f"c{i}", code, 5, agent, agent == "coder" or i % 5 == 0))
            samples.append(OutcomeSample(f"q{i}", quiz, 3, agent, agent == "quizzer" or i % 5 == 0))
    return samples
