"""Duke, the learned router: predicts P(success | task, agent) from past outcomes.

The model is a *hierarchical logistic regression* on the task features ``x`` (hashed n-grams plus
complexity and length, see ``features.HashingFeaturizer``)::

    logit P(success | x, a) = c + b_a + x . w + t(x) . v_a

- ``c``: global intercept (not penalised);
- ``x . w``: how hard the task is for everyone, shared by all agents (penalty
  ``||w||^2 / (2 C_shared)``);
- ``b_a``: agent ``a``'s skill relative to the others, shrunk toward 0 as if by ``prior_strength``
  pseudo-outcomes (penalty ``prior_strength / 8 * b_a^2``, the curvature of that many outcomes at
  p = 0.5);
- ``t(x) . v_a``: what agent ``a`` is good or bad at (penalty ``||v_a||^2 / (2 C)``), fitted only
  for agents with at least ``min_samples_per_agent`` outcomes of both classes. ``t(x)`` is a
  low-dimensional *task type*: the hashed text is projected to ``agent_n_features`` dimensions by a
  fixed signed random projection, and the principal directions of the training tasks with more than
  the average variance (Kaiser's rule, at most ``agent_n_components``) are kept, plus complexity
  and length. Agent-specific weights thus live on a few smooth directions (on RouterBench: the three
  task families), not on single words, which would mostly fit noise.

All agents share ``w`` and the task-type basis, so an agent with a handful of outcomes still
inherits how hard each kind of task is, and its own terms grow only with its evidence. This matters
under bandit feedback, where most agents are seen only when explored. An agent unseen in training is
predicted as the population's average agent on that task (``b_a = 0``, ``v_a = 0``).

The objective (sum of log-losses plus the penalties) is convex and minimised with L-BFGS (scipy),
deterministically. Training and serving are the same class. Artifacts hold only numpy arrays and
builtins, written with skops (never pickle) and read back with an explicit trusted-types list.
"""

from __future__ import annotations

import importlib
import math
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from dukenet.learning.features import (
    FEATURIZERS,
    N_EXTRA_FEATURES,
    Featurizer,
    HashingFeaturizer,
    TaskFeatures,
)

ARTIFACT_FORMAT = "dukenet.duke-router/1"
"""Format tag stored in every artifact; ``load`` refuses any other."""

TRUSTED_TYPES: tuple[str, ...] = ("numpy.ndarray", "numpy.dtype", "numpy.float64", "numpy.int64")
"""Types besides builtins (dict, list, str, int, float, bool, None) that an artifact may contain."""

P_MIN = 1e-4
"""Predictions are clipped to ``[P_MIN, 1 - P_MIN]`` so they stay inside (0, 1)."""


@dataclass(frozen=True)
class OutcomeSample:
    """One finished task: which agent did it and whether it succeeded.

    Attributes:
        task_id: stable id of the task (decides its side of the held-out split).
        description: the task text.
        complexity: task complexity, 1..10.
        agent: agent key (a UUID string in production, a model name in benchmarks).
        success: whether the agent's result was accepted as correct.
    """

    task_id: str
    description: str
    complexity: int
    agent: str
    success: bool


@dataclass(frozen=True)
class RouterConfig:
    """Hyperparameters of ``DukeRouter``; JSON-serialisable with ``dataclasses.asdict``.

    Attributes:
        n_features: width of the hashed text block (a power of 2).
        C: inverse L2 strength of the agent x task-type weights ``v_a`` (larger: less shrinkage).
        min_samples_per_agent: outcomes an agent needs (with both classes) before ``v_a`` is fitted.
        prior_strength: pseudo-outcomes pulling each agent's skill ``b_a`` toward the population.
        seed: recorded with the version for reproducibility; the fit has no random step.
        C_shared: inverse L2 strength of the shared task-difficulty weights ``w`` (small: the
            difficulty of one prompt is rarely learnable, that of a kind of prompt is).
        agent_n_features: width of the signed random projection of the hashed text from which the
            task-type directions are taken.
        agent_n_components: at most this many task-type directions (Kaiser's rule picks fewer).
        word_ngram_max: word n-grams 1..``word_ngram_max`` are hashed.
        char_ngrams: also hash char 3..5-grams (slower, more robust to misspellings).
        max_iter: L-BFGS iteration cap.
        features: the featurizer, one of ``FEATURIZERS``: ``"hashing"`` (``n_features``,
            ``word_ngram_max`` and ``char_ngrams`` apply) or ``"embedding"`` (``embedding_dim``
            applies; needs the ``embeddings`` extra). Artifacts saved before this field existed
            load as ``"hashing"``.
        embedding_dim: width of the sentence embedding kept (16..256).
        price_prior: shrink each agent's skill ``b_a`` toward ``gamma * z_a`` instead of 0, with
            ``z_a`` its standardised log list price and the slope ``gamma`` fitted on all agents
            (a group-level predictor in a multilevel model, Gelman & Hill 2007, ch. 12): an agent
            seen on few outcomes starts where agents of its price stand. Needs ``agent_prices``
            in ``DukeRouter.fit``; without them it is ignored. Off by default: in
            ``benchmarks/router_quality.py`` it changed the served champion's AIQ by
            -0.012 +- 0.033 on MMLU-Pro (10 seeds) and -0.014 +- 0.034 on RouterBench (6 seeds).

    Defaults were tuned on RouterBench (held-out Brier score with full information, and the
    simulated bandit loop of ``benchmarks/router_quality.py``).
    """

    n_features: int = 2**18
    C: float = 3.0
    min_samples_per_agent: int = 5
    prior_strength: float = 4.0
    seed: int = 0
    C_shared: float = 0.1
    agent_n_features: int = 64
    agent_n_components: int = 8
    word_ngram_max: int = 2
    char_ngrams: bool = False
    max_iter: int = 500
    features: str = "hashing"
    embedding_dim: int = 256
    price_prior: bool = False

    def __post_init__(self) -> None:
        if self.features not in FEATURIZERS:
            raise ValueError(f"features must be one of {FEATURIZERS}, not {self.features!r}")
        if not 16 <= self.embedding_dim <= 256:
            raise ValueError("embedding_dim must be in 16..256")
        if self.n_features < 16 or self.agent_n_features < 16:
            raise ValueError("n_features and agent_n_features must be at least 16")
        if self.C <= 0 or self.C_shared <= 0:
            raise ValueError("C and C_shared must be positive")
        if self.prior_strength <= 0:
            raise ValueError("prior_strength must be positive")
        if self.min_samples_per_agent < 1 or self.max_iter < 1:
            raise ValueError("min_samples_per_agent and max_iter must be at least 1")

    def featurizer(self) -> Featurizer:
        """Build the (stateless) featurizer these settings describe; an embedding featurizer
        loads its encoder on first use (``embedding.MissingExtraError`` without the extra)."""
        if self.features == "embedding":
            from dukenet.learning.embedding import EmbeddingFeaturizer

            return EmbeddingFeaturizer(self.embedding_dim)
        return HashingFeaturizer(
            self.n_features, word_ngram_max=self.word_ngram_max, char_ngrams=self.char_ngrams
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouterConfig:
        """Rebuild a config from ``asdict`` output, ignoring unknown keys (forward compatible)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class AgentStats:
    """Training evidence for one agent: number of outcomes and of successes."""

    n: int
    successes: int

    @property
    def rate(self) -> float:
        """Raw success rate (nan when ``n == 0``)."""
        return self.successes / self.n if self.n else math.nan


class DukeRouter:
    """Predicts P(success | task, agent). Same class for training and serving.

    Build it with ``fit`` or ``load``; the constructor takes already-fitted parameters.

    Attributes:
        config: the hyperparameters it was fitted with.
        agents: agents seen in training, sorted.
        stats: agent -> training evidence (outcomes, successes).
        n_samples: number of training outcomes.
    """

    def __init__(
        self,
        *,
        config: RouterConfig,
        agents: Sequence[str],
        stats: Sequence[AgentStats],
        intercept: float,
        agent_bias: np.ndarray,
        shared_columns: np.ndarray,
        shared_weights: np.ndarray,
        agent_weights: np.ndarray,
        basis_mean: np.ndarray,
        basis: np.ndarray,
        agent_covariance: np.ndarray | None = None,
    ) -> None:
        """Assemble a fitted router from its parameters (see the module docstring for the model).

        Shapes: ``agent_bias`` (K,); ``shared_columns``, ``shared_weights`` (D,): ``w`` as sparse
        (column, value) pairs; ``agent_weights`` (K, k + 2): the ``v_a``; ``basis_mean``
        (agent_n_features,) and ``basis`` (k, agent_n_features): the task-type directions;
        ``agent_covariance`` (K, k + 3, k + 3): the Laplace posterior covariance of each agent's
        ``(b_a, v_a)`` (see ``predict_logit_features``); None (artifacts saved before it existed)
        rebuilds the bias-only approximation from ``stats``.
        """
        k = len(agents)
        self.config = config
        self.agents: tuple[str, ...] = tuple(agents)
        self._featurizer = config.featurizer()
        self._projection = _projection(self._featurizer.n_text_columns, config.agent_n_features)
        self._intercept = float(intercept)
        self._agent_bias = np.asarray(agent_bias, dtype=np.float64)
        self._shared_columns = np.asarray(shared_columns, dtype=np.int64)
        self._shared_weights = np.asarray(shared_weights, dtype=np.float64)
        self._agent_weights = np.asarray(agent_weights, dtype=np.float64)
        self._basis_mean = np.asarray(basis_mean, dtype=np.float64)
        self._basis = np.asarray(basis, dtype=np.float64)
        if self._basis_mean.shape != (config.agent_n_features,) or self._basis.ndim != 2:
            raise ValueError("basis_mean must have shape (agent_n_features,), basis 2-D")
        if self._basis.shape[1] != config.agent_n_features:
            raise ValueError("basis must have shape (n_components, agent_n_features)")
        if len(set(self.agents)) != k or len(stats) != k or self._agent_bias.shape != (k,):
            raise ValueError("agents must be distinct; stats and agent_bias need one entry each")
        if self._agent_weights.shape != (k, self._basis.shape[0] + N_EXTRA_FEATURES):
            raise ValueError("agent_weights must have shape (n_agents, n_components + 2)")
        if self._shared_columns.shape != self._shared_weights.shape:
            raise ValueError("shared_columns and shared_weights must have the same shape")
        n_columns = self._featurizer.n_columns
        if self._shared_columns.size and (
            self._shared_columns.min() < 0 or self._shared_columns.max() >= n_columns
        ):
            raise ValueError("shared column index out of range for n_features")
        self.stats: dict[str, AgentStats] = dict(zip(self.agents, stats, strict=True))
        self.n_samples = sum(s.n for s in stats)
        self._index = {agent: i for i, agent in enumerate(self.agents)}
        dense_w = np.zeros(n_columns, dtype=np.float64)
        dense_w[self._shared_columns] = self._shared_weights
        self._dense_shared = dense_w
        width = self._agent_weights.shape[1] + 1
        self._prior_variance = 4.0 / config.prior_strength
        if agent_covariance is None:
            agent_covariance = _stats_covariance(stats, width, config.prior_strength)
        self._agent_covariance = np.asarray(agent_covariance, dtype=np.float64)
        if self._agent_covariance.shape != (k, width, width):
            raise ValueError("agent_covariance must have shape (n_agents, k + 3, k + 3)")

    # ------------------------------------------------------------------ training
    @classmethod
    def fit(
        cls,
        samples: Sequence[OutcomeSample],
        config: RouterConfig,
        *,
        featurize: Callable[[Sequence[TaskFeatures]], sp.csr_matrix] | None = None,
        agent_prices: Mapping[str, float] | None = None,
    ) -> DukeRouter:
        """Fit on outcomes (any number; with none, every prediction is 0.5).

        ``featurize`` may replace ``config.featurizer().transform`` (e.g. a cache of its output);
        it must return exactly what that would, one row per task. ``agent_prices`` (agent ->
        list price, any positive unit, e.g. ``base_price_sat``) feed ``config.price_prior``;
        agents missing from it, or a non-positive price, get ``z_a = 0`` (the average price).

        Cost: one featurisation of the distinct tasks (about half the time), then L-BFGS
        iterations of O(nnz of the task features + n_samples * n_components) each: about 0.5 s
        for 2,000 outcomes with one-sentence descriptions and 4-5 s for RouterBench's 24,475
        (prompt, model) pairs (2,000-character prompts) on one core.
        """
        agents = tuple(sorted({s.agent for s in samples}))
        k = len(agents)
        if not samples:
            return cls(
                config=config,
                agents=(),
                stats=(),
                intercept=0.0,
                agent_bias=np.zeros(0),
                shared_columns=np.zeros(0, dtype=np.int64),
                shared_weights=np.zeros(0),
                agent_weights=np.zeros((0, N_EXTRA_FEATURES)),
                basis_mean=np.zeros(config.agent_n_features),
                basis=np.zeros((0, config.agent_n_features)),
            )
        agent_of = {agent: i for i, agent in enumerate(agents)}
        task_key: dict[tuple[str, int], int] = {}
        task_of = np.empty(len(samples), dtype=np.int64)
        for i, s in enumerate(samples):
            task_of[i] = task_key.setdefault((s.description, s.complexity), len(task_key))
        agent_idx = np.array([agent_of[s.agent] for s in samples], dtype=np.int64)
        y = np.array([s.success for s in samples], dtype=np.float64)
        featurizer = config.featurizer()
        transform = featurize or featurizer.transform
        x_full = sp.csr_matrix(transform([TaskFeatures(d, c) for d, c in task_key]))
        if x_full.shape != (len(task_key), featurizer.n_columns):
            raise ValueError("featurize returned a matrix of the wrong shape")
        shared_columns = np.unique(x_full.indices).astype(np.int64)
        x_tasks = sp.csr_matrix(x_full[:, shared_columns])
        n_tasks, d_shared = x_tasks.shape
        compact = _compact(x_full, _projection(featurizer.n_text_columns, config.agent_n_features))
        basis_mean, basis = _principal_basis(compact[:, : config.agent_n_features], config)
        x_rows = _agent_features(compact, basis_mean, basis)[task_of]
        width = x_rows.shape[1]

        counts = np.bincount(agent_idx, minlength=k)
        wins = np.bincount(agent_idx, weights=y, minlength=k)
        stats = [AgentStats(int(n), int(s)) for n, s in zip(counts, wins, strict=True)]
        # Agents with too little evidence keep v_a = 0 (their gradient is masked out).
        own = (counts >= config.min_samples_per_agent) & (wins > 0) & (wins < counts)
        mask = own[:, np.newaxis].astype(np.float64)
        membership = sp.csr_matrix(
            (np.ones(len(samples)), (agent_idx, np.arange(len(samples)))), shape=(k, len(samples))
        )

        bias_penalty = config.prior_strength / 4.0
        shared_penalty = 1.0 / config.C_shared
        agent_penalty = 1.0 / config.C
        price_z = _price_scores(agents, agent_prices) if config.price_prior else np.zeros(k)
        price_row = price_z[agent_idx]
        b_at, w_at, v_at = 2, 2 + k, 2 + k + d_shared

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            c, gamma, b, w = theta[0], theta[1], theta[b_at:w_at], theta[w_at:v_at]
            v = theta[v_at:].reshape(k, width)
            z = (
                c
                + gamma * price_row
                + b[agent_idx]
                + (x_tasks @ w)[task_of]
                + np.einsum("ij,ij->i", x_rows, v[agent_idx])
            )
            r = _sigmoid(z) - y
            loss = float(np.sum(np.logaddexp(0.0, z) - y * z)) + 0.5 * (
                bias_penalty * float(b @ b)
                + shared_penalty * float(w @ w)
                + agent_penalty * float(np.sum(v * v))
            )
            grad = np.empty_like(theta)
            grad[0] = r.sum()
            grad[1] = float(r @ price_row)
            grad[b_at:w_at] = np.bincount(agent_idx, weights=r, minlength=k) + bias_penalty * b
            r_task = np.bincount(task_of, weights=r, minlength=n_tasks)
            grad[w_at:v_at] = x_tasks.T @ r_task + shared_penalty * w
            grad_v = (membership @ (x_rows * r[:, np.newaxis]) + agent_penalty * v) * mask
            grad[v_at:] = grad_v.ravel()
            return loss, grad

        theta0 = np.zeros(v_at + k * width, dtype=np.float64)
        mean = (y.sum() + 1.0) / (y.size + 2.0)
        theta0[0] = math.log(mean / (1.0 - mean))
        result = minimize(
            objective,
            theta0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": config.max_iter, "ftol": 1e-9, "gtol": 1e-5},
        )
        theta = np.asarray(result.x, dtype=np.float64)
        v_fit = theta[v_at:].reshape(k, width) * mask
        # the price term folds into each agent's skill: b_a + gamma * z_a (serving is unchanged)
        agent_bias = theta[b_at:w_at] + theta[1] * price_z
        z_fit = (
            theta[0]
            + agent_bias[agent_idx]
            + (x_tasks @ theta[w_at:v_at])[task_of]
            + np.einsum("ij,ij->i", x_rows, v_fit[agent_idx])
        )
        covariance = _laplace_covariance(
            z_fit, agent_idx, x_rows, own, bias_penalty=bias_penalty, agent_penalty=agent_penalty
        )
        return cls(
            config=config,
            agents=agents,
            stats=stats,
            intercept=float(theta[0]),
            agent_bias=agent_bias,
            shared_columns=shared_columns,
            shared_weights=theta[w_at:v_at].copy(),
            agent_weights=v_fit,
            basis_mean=basis_mean,
            basis=basis,
            agent_covariance=covariance,
        )

    # ------------------------------------------------------------------ serving
    def featurize(self, tasks: Sequence[TaskFeatures]) -> sp.csr_matrix:
        """Featurize tasks as this router does: CSR, shape ``(n_tasks, n_features + 2)``."""
        return self._featurizer.transform(tasks)

    def predict_proba(self, tasks: Sequence[TaskFeatures], agents: Sequence[str]) -> np.ndarray:
        """Return P(success) of each agent on each task, shape ``(n_tasks, n_agents)``, in (0, 1).

        Agents unseen in training get the population's average agent on that task.
        """
        return self.predict_proba_features(self.featurize(tasks), agents)

    def predict_proba_features(self, x: sp.spmatrix, agents: Sequence[str]) -> np.ndarray:
        """Like ``predict_proba`` but on ``featurize`` output, to reuse features across calls."""
        if x.shape[1] != self._featurizer.n_columns:
            raise ValueError(
                f"expected {self._featurizer.n_columns} feature columns, got {x.shape[1]}"
            )
        x = sp.csr_matrix(x)
        base = self._intercept + x @ self._dense_shared
        known = [self._index.get(agent) for agent in agents]
        rows = np.array([i for i in known if i is not None], dtype=np.int64)
        features = _agent_features(_compact(x, self._projection), self._basis_mean, self._basis)
        own = features @ self._agent_weights[rows].T + self._agent_bias[rows]
        logits = np.repeat(base[:, np.newaxis], len(agents), axis=1)
        positions = [j for j, i in enumerate(known) if i is not None]
        logits[:, positions] += own
        return np.asarray(np.clip(_sigmoid(logits), P_MIN, 1.0 - P_MIN), dtype=np.float64)

    def predict_logit_features(
        self, x: sp.spmatrix, agents: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the posterior mean and standard deviation of each agent's logit on each task.

        Both have shape ``(n_tasks, n_agents)``; ``sigmoid(mean)`` (clipped to ``P_MIN``) is what
        ``predict_proba_features`` returns. The spread is a *Laplace approximation* (MacKay 1992;
        Chapelle & Li 2011 use it for Thompson sampling with logistic models): the penalised
        log-likelihood's Hessian in agent ``a``'s own parameters ``theta_a = (b_a, v_a)``, taken at
        the fit and given the shared parameters (``c``, ``w``) and the task-type basis, is inverted
        into a Gaussian posterior ``N(theta_a_hat, Sigma_a)``; the logit of agent ``a`` on a task
        with agent features ``t`` is then ``N(mean, f' Sigma_a f)`` with ``f = (1, t)``. The
        penalties are the priors: ``b_a ~ N(0, 4 / prior_strength)`` and, for agents whose
        ``v_a`` is fitted, ``v_a ~ N(0, C I)``; agents below ``min_samples_per_agent`` have
        ``v_a = 0`` by construction and only ``b_a`` varies. An agent unseen in training has the
        prior alone: standard deviation ``sqrt(4 / prior_strength)`` (1 logit at the default 4).
        The shared parameters' own uncertainty is left out (it moves all agents together).
        """
        if x.shape[1] != self._featurizer.n_columns:
            raise ValueError(
                f"expected {self._featurizer.n_columns} feature columns, got {x.shape[1]}"
            )
        x = sp.csr_matrix(x)
        base = self._intercept + x @ self._dense_shared
        known = [self._index.get(agent) for agent in agents]
        rows = np.array([i for i in known if i is not None], dtype=np.int64)
        positions = [j for j, i in enumerate(known) if i is not None]
        features = _agent_features(_compact(x, self._projection), self._basis_mean, self._basis)
        logits = np.repeat(base[:, np.newaxis], len(agents), axis=1)
        logits[:, positions] += features @ self._agent_weights[rows].T + self._agent_bias[rows]
        design = np.hstack([np.ones((x.shape[0], 1)), features])
        # var[n, j] = f_n' Sigma_j f_n for every task n and known agent j.
        spread = np.einsum("jde,ne->jnd", self._agent_covariance[rows], design)
        variance = np.full(logits.shape, self._prior_variance)
        variance[:, positions] = np.einsum("jnd,nd->nj", spread, design)
        return logits, np.sqrt(np.maximum(variance, 0.0))

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        """Write the router to a skops file (numpy arrays and builtins only, no pickle)."""
        state: dict[str, Any] = {
            "format": ARTIFACT_FORMAT,
            "config": asdict(self.config),
            "agents": list(self.agents),
            "n": [self.stats[a].n for a in self.agents],
            "successes": [self.stats[a].successes for a in self.agents],
            "intercept": self._intercept,
            "agent_bias": self._agent_bias,
            "shared_columns": self._shared_columns,
            "shared_weights": self._shared_weights,
            "agent_weights": self._agent_weights,
            "basis_mean": self._basis_mean,
            "basis": self._basis,
            "agent_covariance": self._agent_covariance,
        }
        _skops().dump(state, Path(path), compression=zipfile.ZIP_DEFLATED)

    @classmethod
    def load(cls, path: Path) -> DukeRouter:
        """Read a router saved by ``save``, trusting only ``TRUSTED_TYPES``.

        Raises:
            skops.io.exceptions.UntrustedTypesFoundException: the file holds any other type.
            ValueError: the file is not a Duke router artifact.
        """
        state = _skops().load(Path(path), trusted=list(TRUSTED_TYPES))
        return cls._from_state(state, str(path))

    @classmethod
    def loads(cls, data: bytes) -> DukeRouter:
        """Read a router from the bytes of a file ``save`` wrote (as ``load`` does)."""
        state = _skops().loads(data, trusted=list(TRUSTED_TYPES))
        return cls._from_state(state, "the artifact")

    @classmethod
    def _from_state(cls, state: object, source: str) -> DukeRouter:
        if not isinstance(state, dict) or state.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"{source} is not a {ARTIFACT_FORMAT} artifact")
        return cls(
            config=RouterConfig.from_dict(state["config"]),
            agents=[str(a) for a in state["agents"]],
            stats=[
                AgentStats(int(n), int(s))
                for n, s in zip(state["n"], state["successes"], strict=True)
            ],
            intercept=float(state["intercept"]),
            agent_bias=np.asarray(state["agent_bias"]),
            shared_columns=np.asarray(state["shared_columns"]),
            shared_weights=np.asarray(state["shared_weights"]),
            agent_weights=np.asarray(state["agent_weights"]),
            basis_mean=np.asarray(state["basis_mean"]),
            basis=np.asarray(state["basis"]),
            agent_covariance=(
                None
                if state.get("agent_covariance") is None
                else np.asarray(state["agent_covariance"])
            ),
        )


def _skops() -> ModuleType:
    """Return ``skops.io``, imported on first use: importing it walks every scikit-learn
    estimator (and, with torch installed, imports torch), seconds that every API process
    would otherwise spend at start before it needs an artifact."""
    return importlib.import_module("skops.io")


def _projection(n_features: int, n_compact: int) -> sp.csr_matrix:
    """Signed random projection of the hashed text block: (n_features, n_compact), one +-1 per row.

    Deterministic (an integer hash of the column index), so it never needs saving.
    """
    j = np.arange(n_features, dtype=np.uint64)
    h = (j + np.uint64(0x9E3779B97F4A7C15)) * np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(31)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(29)
    target = (h % np.uint64(n_compact)).astype(np.int64)
    sign = np.where((h >> np.uint64(63)) == 1, -1.0, 1.0)
    return sp.csr_matrix((sign, (np.arange(n_features), target)), shape=(n_features, n_compact))


def _compact(x: sp.csr_matrix, projection: sp.csr_matrix) -> np.ndarray:
    """Project featurizer output to the dense per-agent block: (n, n_compact + 2), float64."""
    n_text = projection.shape[0]
    text = np.asarray((x[:, :n_text] @ projection).toarray(), dtype=np.float64)
    extra = np.asarray(x[:, n_text:].toarray(), dtype=np.float64)
    return np.hstack([text, extra])


def _principal_basis(text: np.ndarray, config: RouterConfig) -> tuple[np.ndarray, np.ndarray]:
    """Top principal directions of the compact text block: mean (d,), basis (n_components, d).

    Signs are fixed (largest-magnitude loading positive) so the result is deterministic.
    """
    mean = text.mean(axis=0)
    k = min(config.agent_n_components, text.shape[0], text.shape[1])
    if k == 0:
        return mean, np.zeros((0, text.shape[1]))
    _, singular, vt = np.linalg.svd(text - mean, full_matrices=False)
    variance = singular**2
    # Kaiser's rule: keep directions with more than the average variance (task types), drop the rest
    # (prompt-level noise).
    k = min(k, int(np.sum(variance > variance.mean() + 1e-12)))
    if k == 0:
        return mean, np.zeros((0, text.shape[1]))
    basis = vt[:k]
    signs = np.sign(basis[np.arange(k), np.argmax(np.abs(basis), axis=1)])
    return mean, basis * np.where(signs == 0, 1.0, signs)[:, np.newaxis]


def _agent_features(compact: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Per-agent block: principal scores of the compact text, then the extras: (n, k + 2)."""
    d = mean.shape[0]
    return np.hstack([(compact[:, :d] - mean) @ basis.T, compact[:, d:]])


def _laplace_covariance(
    z: np.ndarray,
    agent_idx: np.ndarray,
    x_rows: np.ndarray,
    own: np.ndarray,
    *,
    bias_penalty: float,
    agent_penalty: float,
) -> np.ndarray:
    """Laplace posterior covariance of each agent's ``(b_a, v_a)``: (K, width + 1, width + 1).

    ``z`` (n,) are the fitted logits of the training rows, ``x_rows`` (n, width) their agent
    features, ``own`` (K,) whether ``v_a`` was fitted. The precision of agent ``a`` is
    ``sum_i p_i (1 - p_i) f_i f_i' + diag(bias_penalty, agent_penalty, ...)`` over its rows with
    ``f_i = (1, x_i)``; agents without ``v_a`` keep only the ``b_a`` entry (1 / its precision).
    """
    k, width = own.size, x_rows.shape[1] + 1
    p = _sigmoid(z)
    curvature = p * (1.0 - p)
    design = np.hstack([np.ones((z.size, 1)), x_rows])
    prior = np.diag(np.r_[bias_penalty, np.full(width - 1, agent_penalty)])
    out = np.zeros((k, width, width), dtype=np.float64)
    order = np.argsort(agent_idx, kind="stable")
    bounds = np.searchsorted(agent_idx[order], np.arange(k + 1))
    for a in range(k):
        rows = order[bounds[a] : bounds[a + 1]]
        if own[a]:
            f = design[rows]
            precision = (f * curvature[rows, np.newaxis]).T @ f + prior
            out[a] = np.linalg.inv(precision)
        else:
            out[a, 0, 0] = 1.0 / (float(curvature[rows].sum()) + bias_penalty)
    return out


def _stats_covariance(stats: Sequence[AgentStats], width: int, prior_strength: float) -> np.ndarray:
    """Bias-only Laplace covariance from outcome counts (artifacts without a stored one).

    Precision ``n p (1 - p) + prior_strength / 4`` with ``p`` the Beta(1, 1)-smoothed success
    rate: (K, width, width), zero outside the ``b_a`` entry.
    """
    out = np.zeros((len(stats), width, width), dtype=np.float64)
    for a, s in enumerate(stats):
        p = (s.successes + 1.0) / (s.n + 2.0)
        out[a, 0, 0] = 1.0 / (s.n * p * (1.0 - p) + prior_strength / 4.0)
    return out


def _price_scores(agents: Sequence[str], prices: Mapping[str, float] | None) -> np.ndarray:
    """Standardised log list prices ``z_a`` of ``agents``, shape (K,): mean 0 and standard
    deviation 1 over the agents with a positive price; 0 for the others (and for all when fewer
    than two prices differ)."""
    z = np.zeros(len(agents), dtype=np.float64)
    if not prices:
        return z
    known = np.array([float(prices.get(a, 0.0)) > 0.0 for a in agents])
    if known.sum() < 2:
        return z
    logs = np.log(np.array([float(prices[a]) for a, ok in zip(agents, known, strict=True) if ok]))
    spread = float(logs.std())
    if spread <= 0.0:
        return z
    z[known] = (logs - logs.mean()) / spread
    return z


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, elementwise."""
    out = np.empty_like(z, dtype=np.float64)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    ez = np.exp(z[~positive])
    out[~positive] = ez / (1.0 + ez)
    return out
