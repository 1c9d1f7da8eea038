"""Hyperparameter tuning of Duke with Optuna: featurizer, model family and regularisation.

A study minimises the cross-validated log loss (or Brier score) of ``DukeRouter`` on the *train
side* of the held-out split (``evaluation.held_out_split`` with the trainer's ``split_seed``):
the held-out rows that decide promotions are never seen by the tuner, so a tuned configuration
still has to win the ordinary promotion gate. Folds group outcomes by task, so all outcomes of one
prompt sit in one fold. The sampler is Optuna's TPE, seeded; a median pruner stops trials whose
first folds are already worse than the median.

The study lives in the app's own database (Optuna ``RDBStorage`` with the synchronous driver of
the same URL, see ``sync_storage_url``): on PostgreSQL in its own schema ``optuna``; on SQLite in
the same file, next to the app's tables (Optuna's tables are ``studies``, ``trials``, ...).

Each tuning is recorded as a ``TrainingRun`` with ``trigger = "tune"``: ``config`` is the best
``RouterConfig`` (``asdict``), ``metrics`` holds the best value, parameters, trial counts and study
name. ``latest_tuned_config`` returns the newest one: the configuration the next training uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import optuna
import scipy.sparse as sp
import sqlalchemy
import structlog
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.errors import BadRequest
from dukenet.kit.orm import utcnow
from dukenet.learning import repository
from dukenet.learning import service as learning_service
from dukenet.learning.embedding import embeddings_available
from dukenet.learning.evaluation import classifier_metrics, held_out_split, split_hash
from dukenet.learning.features import TaskFeatures
from dukenet.learning.models import TUNE_TRIGGER, TrainingRun, TrainingRunStatus
from dukenet.learning.router import DukeRouter, OutcomeSample, RouterConfig

log = structlog.get_logger(__name__)

"""``TrainingRun.trigger`` of a tuning record."""

OPTUNA_SCHEMA = "optuna"
"""PostgreSQL schema holding the Optuna tables (so its own Alembic table stays apart)."""

Objective = Literal["log_loss", "brier"]

FOLD_SALT = 7_919
"""Added to the seed of the fold hash so folds never coincide with the held-out split."""

_FEATURIZER_KEYS = ("features", "n_features", "word_ngram_max", "char_ngrams", "embedding_dim")


@dataclass(frozen=True)
class TuningResult:
    """What one study produced.

    Attributes:
        study_name: the Optuna study (in the app's database).
        objective: ``"log_loss"`` or ``"brier"``, cross-validated on the train side.
        best_value: the best trial's objective (mean over folds).
        best_params: the best trial's parameters, as Optuna names them.
        best_config: the ``RouterConfig`` those parameters describe.
        default_value: the objective of the default ``RouterConfig`` on the same folds (the first
            trial of a new study), for comparison.
        n_trials: finished (complete or pruned) trials in the study, earlier runs included.
        n_trials_run: trials this call ran.
        n_outcomes: outcomes on the train side (those the folds are made of).
        n_folds, seed, split_seed: as passed.
        started_at, duration_s: wall-clock start (UTC) and duration in seconds.
    """

    study_name: str
    objective: str
    best_value: float
    best_params: dict[str, Any]
    best_config: RouterConfig
    default_value: float | None
    n_trials: int
    n_trials_run: int
    n_outcomes: int
    n_folds: int
    seed: int
    split_seed: int
    started_at: datetime
    duration_s: float


def sync_storage_url(database_url: str) -> str:
    """Map the app's async URL to the synchronous one Optuna needs.

    ``sqlite+aiosqlite://`` becomes ``sqlite://``; ``postgresql+asyncpg://`` (or any PostgreSQL
    driver) becomes ``postgresql+psycopg://`` (psycopg 3). Host, credentials, database and query
    are kept, except asyncpg's ``ssl=`` which becomes libpq's ``sslmode=`` (``true``: ``require``).

    Raises:
        ValueError: for any other backend.
    """
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        query = dict(url.query)
        ssl = query.pop("ssl", None)  # asyncpg's name for libpq's sslmode
        if ssl is not None and "sslmode" not in query:
            value = ssl if isinstance(ssl, str) else ssl[-1]
            query["sslmode"] = "require" if value.lower() == "true" else value
        return url.set(drivername="postgresql+psycopg", query=query).render_as_string(
            hide_password=False
        )
    raise ValueError(f"no Optuna storage for database backend {backend!r}")


def open_storage(database_url: str) -> optuna.storages.RDBStorage:
    """Open Optuna's storage in the app's database (creating its tables on first use).

    PostgreSQL: in schema ``OPTUNA_SCHEMA`` (created if missing), through ``search_path``.
    SQLite: in the same file; Optuna's schema-version check is skipped there because the file's
    ``alembic_version`` table is the app's (its tables are created by the pinned Optuna itself).

    Raises:
        BadRequest: a SQLite database that the app's migrations have not set up yet (Optuna would
            otherwise stamp its own revision into the app's ``alembic_version``).
    """
    url = sync_storage_url(database_url)
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(sqlalchemy.text(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}"))
            elif not sqlalchemy.inspect(connection).has_table("alembic_version"):
                raise BadRequest("the database is not migrated: run `dukenet db upgrade` first")
    finally:
        engine.dispose()
    if make_url(url).get_backend_name() == "postgresql":
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={
                "connect_args": {"options": f"-csearch_path={OPTUNA_SCHEMA}"},
                "pool_pre_ping": True,
            },
        )
    return optuna.storages.RDBStorage(
        url, engine_kwargs={"connect_args": {"timeout": 30}}, skip_compatibility_check=True
    )


def close_storage(storage: optuna.storages.RDBStorage) -> None:
    """Release the storage's connections."""
    storage.remove_session()
    storage.engine.dispose()


def suggest_config(
    trial: optuna.trial.BaseTrial, *, base: RouterConfig, features: Sequence[str]
) -> RouterConfig:
    """Draw a ``RouterConfig`` from the search space (``base`` gives everything not searched).

    Space: ``features`` among those given; for ``"hashing"`` ``n_features`` in {2^14, 2^16, 2^18},
    ``word_ngram_max`` 1..3 and ``char_ngrams``; for ``"embedding"`` ``embedding_dim`` in
    {64, 128, 256}. Model family: ``"hierarchical"`` (per-agent task-type weights: ``C`` log-uniform
    0.1..30, ``agent_n_components`` 1..16, ``agent_n_features`` in {32, 64, 128},
    ``min_samples_per_agent`` 1..20) or ``"additive"`` (agent skill + shared difficulty only:
    ``agent_n_components = 0``). Always ``C_shared`` log-uniform 0.01..3 and ``prior_strength``
    log-uniform 0.5..50.
    """
    params: dict[str, Any] = {}
    kind = trial.suggest_categorical("features", list(features))
    params["features"] = kind
    if kind == "hashing":
        params["n_features"] = 2 ** trial.suggest_categorical("log2_n_features", [14, 16, 18])
        params["word_ngram_max"] = trial.suggest_int("word_ngram_max", 1, 3)
        params["char_ngrams"] = trial.suggest_categorical("char_ngrams", [False, True])
    else:
        params["embedding_dim"] = trial.suggest_categorical("embedding_dim", [64, 128, 256])
    family = trial.suggest_categorical("family", ["hierarchical", "additive"])
    if family == "hierarchical":
        params["C"] = trial.suggest_float("C", 0.1, 30.0, log=True)
        params["agent_n_components"] = trial.suggest_int("agent_n_components", 1, 16)
        params["agent_n_features"] = trial.suggest_categorical("agent_n_features", [32, 64, 128])
        params["min_samples_per_agent"] = trial.suggest_int("min_samples_per_agent", 1, 20)
    else:
        params["agent_n_components"] = 0
    params["C_shared"] = trial.suggest_float("C_shared", 0.01, 3.0, log=True)
    params["prior_strength"] = trial.suggest_float("prior_strength", 0.5, 50.0, log=True)
    return dataclasses.replace(base, **params)


def default_params(config: RouterConfig) -> dict[str, Any]:
    """Return the search-space parameters that describe ``config`` (to enqueue it as a trial)."""
    params: dict[str, Any] = {"features": config.features}
    if config.features == "hashing":
        params.update(
            log2_n_features=round(math.log2(config.n_features)),
            word_ngram_max=config.word_ngram_max,
            char_ngrams=config.char_ngrams,
        )
    else:
        params["embedding_dim"] = config.embedding_dim
    if config.agent_n_components == 0:
        params["family"] = "additive"
    else:
        params.update(
            family="hierarchical",
            C=config.C,
            agent_n_components=config.agent_n_components,
            agent_n_features=config.agent_n_features,
            min_samples_per_agent=config.min_samples_per_agent,
        )
    params.update(C_shared=config.C_shared, prior_strength=config.prior_strength)
    return params


def _in_space(params: dict[str, Any], features: Sequence[str]) -> bool:
    """Return True when ``default_params`` output is a point of ``suggest_config``'s space."""
    choices: dict[str, Sequence[Any]] = {
        "features": features,
        "log2_n_features": (14, 16, 18),
        "word_ngram_max": (1, 2, 3),
        "embedding_dim": (64, 128, 256),
        "agent_n_components": range(1, 17),
        "agent_n_features": (32, 64, 128),
        "min_samples_per_agent": range(1, 21),
    }
    ranges = {"C": (0.1, 30.0), "C_shared": (0.01, 3.0), "prior_strength": (0.5, 50.0)}
    for key, value in params.items():
        if key in choices and value not in choices[key]:
            return False
        if key in ranges and not ranges[key][0] <= value <= ranges[key][1]:
            return False
    return True


def fold_of(samples: Sequence[OutcomeSample], *, n_folds: int, seed: int) -> np.ndarray:
    """Assign each sample a fold in ``0..n_folds-1`` by hashing its task id (shape (n,))."""
    return np.array(
        [int(split_hash(s.task_id, seed + FOLD_SALT) * n_folds) for s in samples], dtype=np.int64
    )


class FeatureCache:
    """Featurizes each distinct task once per featurizer setting (within one tuning call).

    ``featurize_for(config)`` returns a function with the featurizer's output for ``config``,
    usable as ``DukeRouter.fit(featurize=...)`` and for scoring.
    """

    def __init__(self, samples: Sequence[OutcomeSample]) -> None:
        """Index the distinct (description, complexity) pairs of ``samples``."""
        self._row: dict[tuple[str, int], int] = {}
        for s in samples:
            self._row.setdefault((s.description, s.complexity), len(self._row))
        self._tasks = [TaskFeatures(d, c) for d, c in self._row]
        self._matrices: dict[tuple[Any, ...], sp.csr_matrix] = {}

    def featurize_for(
        self, config: RouterConfig
    ) -> Callable[[Sequence[TaskFeatures]], sp.csr_matrix]:
        """Return a featurize function equal to ``config.featurizer().transform`` on known tasks."""
        key = tuple(getattr(config, name) for name in _FEATURIZER_KEYS)
        matrix = self._matrices.get(key)
        if matrix is None:
            matrix = sp.csr_matrix(config.featurizer().transform(self._tasks))
            self._matrices[key] = matrix
        rows = self._row

        def featurize(tasks: Sequence[TaskFeatures]) -> sp.csr_matrix:
            return sp.csr_matrix(matrix[[rows[(t.description, t.complexity)] for t in tasks]])

        return featurize


def fold_losses(
    samples: Sequence[OutcomeSample],
    folds: np.ndarray,
    config: RouterConfig,
    *,
    n_folds: int,
    objective: Objective,
    cache: FeatureCache,
    agent_prices: Mapping[str, float] | None = None,
) -> Iterator[float]:
    """Yield the objective on each fold in turn, fitting on the other folds.

    A fold without samples is skipped; ``agent_prices`` feed ``RouterConfig.price_prior``.
    """
    featurize = cache.featurize_for(config)
    for fold in range(n_folds):
        held = [s for s, f in zip(samples, folds, strict=True) if f == fold]
        fit_rows = [s for s, f in zip(samples, folds, strict=True) if f != fold]
        if not held or not fit_rows:
            continue
        router = DukeRouter.fit(fit_rows, config, featurize=featurize, agent_prices=agent_prices)
        agents = sorted({s.agent for s in held})
        column = {a: i for i, a in enumerate(agents)}
        x = featurize([TaskFeatures(s.description, s.complexity) for s in held])
        p = router.predict_proba_features(x, agents)
        pair = p[np.arange(len(held)), [column[s.agent] for s in held]]
        y = np.array([s.success for s in held], dtype=np.float64)
        yield float(classifier_metrics(y, pair)[objective])


def tune(
    samples: Sequence[OutcomeSample],
    *,
    database_url: str,
    n_trials: int | None,
    timeout_s: float | None = None,
    seed: int = 0,
    split_seed: int = 0,
    n_folds: int = 3,
    objective: Objective = "log_loss",
    study_name: str | None = None,
    features: Sequence[str] | None = None,
    base: RouterConfig | None = None,
    agent_prices: Mapping[str, float] | None = None,
) -> TuningResult:
    """Run (or continue) an Optuna study on the train side of the held-out split; blocking.

    Args:
        samples: every outcome (as ``service.to_samples`` makes them); the held-out side of
            ``held_out_split(samples, seed=split_seed)`` is dropped before anything is fitted.
        database_url: the app's database URL (async form); the study is stored there.
        n_trials: trials to run in this call (None: until ``timeout_s``).
        timeout_s: stop starting new trials after this many seconds (None: no limit).
        seed: seeds the TPE sampler and the fold assignment.
        split_seed: the trainer's held-out split seed.
        n_folds: cross-validation folds (grouped by task), at least 2.
        objective: ``"log_loss"`` or ``"brier"``, averaged over folds; minimised.
        study_name: resume this study if it exists (default: a new ``duke-<hex>`` name).
        features: featurizers to consider (default: ``"hashing"``, plus ``"embedding"`` when the
            extra is installed).
        base: everything the search does not set (default ``RouterConfig(seed=split_seed)``); a new
            study's first trial is ``base`` itself, so the best is never worse than it on the folds.
        agent_prices: agent -> list price (``service.list_prices``), for ``price_prior``.

    Raises:
        BadRequest: fewer than ``2 * n_folds`` distinct tasks on the train side, only one outcome
            class, an unmigrated SQLite database, or no trial finished.
        ValueError: bad ``n_folds``, ``objective`` or ``features``.
    """
    if n_folds < 2:
        raise ValueError("n_folds must be at least 2")
    if objective not in ("log_loss", "brier"):
        raise ValueError("objective must be 'log_loss' or 'brier'")
    if n_trials is None and timeout_s is None:
        raise ValueError("give n_trials, timeout_s or both")
    base = base or RouterConfig(seed=split_seed)
    if features is None:
        features = ("hashing", "embedding") if embeddings_available() else ("hashing",)
    if not features or any(f not in ("hashing", "embedding") for f in features):
        raise ValueError(f"unknown featurizers in {features!r}")
    train_side, _ = held_out_split(samples, seed=split_seed)
    if len({s.task_id for s in train_side}) < 2 * n_folds:
        raise BadRequest(f"need at least {2 * n_folds} distinct tasks to tune with {n_folds} folds")
    if len({s.success for s in train_side}) < 2:
        raise BadRequest("need both successes and failures to tune")
    folds = fold_of(train_side, n_folds=n_folds, seed=seed)
    if len(set(folds.tolist())) < 2:
        raise BadRequest("need tasks in at least two folds to tune: record more outcomes")
    cache = FeatureCache(train_side)
    name = study_name or f"duke-{uuid.uuid4().hex[:12]}"
    started_at, started = utcnow(), time.perf_counter()

    def objective_fn(trial: optuna.Trial) -> float:
        config = suggest_config(trial, base=base, features=features)
        losses: list[float] = []
        for step, loss in enumerate(
            fold_losses(
                train_side,
                folds,
                config,
                n_folds=n_folds,
                objective=objective,
                cache=cache,
                agent_prices=agent_prices,
            )
        ):
            losses.append(loss)
            trial.report(float(np.mean(losses)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(losses))

    storage = open_storage(database_url)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
            load_if_exists=True,
        )
        before = len(study.trials)
        if before == 0 and _in_space(default_params(base), features):
            study.enqueue_trial(default_params(base))
        study.set_user_attr("objective", objective)
        study.optimize(objective_fn, n_trials=n_trials, timeout=timeout_s, n_jobs=1)
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not complete:
            raise BadRequest("no tuning trial finished")
        best = study.best_trial
        first = study.trials[0]
        default_value = (
            float(first.value)
            if before == 0 and first.value is not None and first.params == default_params(base)
            else None
        )
        finished = study.get_trials(
            deepcopy=False,
            states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED),
        )
        return TuningResult(
            study_name=name,
            objective=objective,
            best_value=float(best.value) if best.value is not None else math.nan,
            best_params=dict(best.params),
            best_config=suggest_config(
                optuna.trial.FixedTrial(best.params), base=base, features=features
            ),
            default_value=default_value,
            n_trials=len(finished),
            n_trials_run=len(study.trials) - before,
            n_outcomes=len(train_side),
            n_folds=n_folds,
            seed=seed,
            split_seed=split_seed,
            started_at=started_at,
            duration_s=time.perf_counter() - started,
        )
    finally:
        close_storage(storage)


async def record_tuning(session: AsyncSession, result: TuningResult) -> TrainingRun:
    """Write a tuning result as a succeeded ``TrainingRun`` (``trigger = "tune"``); flush only.

    ``outcomes_used`` stays 0 so the outcome-count trigger's baseline (the most outcomes any
    succeeded run used) is not moved by a tuning; the count is in ``metrics["n_outcomes"]``.
    """
    run = TrainingRun(
        trigger=TUNE_TRIGGER,
        trigger_key=f"{TUNE_TRIGGER}:{result.study_name[:80]}:{uuid.uuid4().hex[:12]}",
        status=TrainingRunStatus.SUCCEEDED,
        outcomes_used=0,
        split_seed=result.split_seed,
        config=dataclasses.asdict(result.best_config),
        metrics=learning_service.json_safe(
            {
                "study_name": result.study_name,
                "objective": result.objective,
                "best_value": result.best_value,
                "default_value": result.default_value,
                "best_params": result.best_params,
                "n_trials": result.n_trials,
                "n_trials_run": result.n_trials_run,
                "n_outcomes": result.n_outcomes,
                "n_folds": result.n_folds,
                "seed": result.seed,
                "duration_s": result.duration_s,
            }
        ),
        log=(
            f"study {result.study_name}: best {result.objective} {result.best_value:.5f} "
            f"after {result.n_trials} trials ({result.n_trials_run} this run, "
            f"{result.duration_s:.1f} s) on {result.n_outcomes} train-side outcomes, "
            f"{result.n_folds}-fold"
        ),
        started_at=result.started_at,
        finished_at=utcnow(),
    )
    session.add(run)
    await session.flush()
    return run


async def latest_tuned_config(session: AsyncSession) -> dict[str, Any] | None:
    """Return the newest tuned configuration (``RouterConfig`` as a dict), or None if none.

    Rebuild it with ``RouterConfig.from_dict`` (unknown keys are ignored).
    """
    stmt = (
        select(TrainingRun)
        .where(
            TrainingRun.trigger == TUNE_TRIGGER,
            TrainingRun.status == TrainingRunStatus.SUCCEEDED,
        )
        .order_by(TrainingRun.finished_at.desc(), TrainingRun.started_at.desc())
        .limit(1)
    )
    run = (await session.execute(stmt)).scalar_one_or_none()
    return dict(run.config) if run is not None else None


async def training_config(session: AsyncSession, *, seed: int) -> RouterConfig:
    """Return the configuration the next training run uses: the newest tuned one, or the
    default. A tuned embedding configuration is skipped where the ``embeddings`` extra is not
    installed, so such a trainer keeps training (on the default) instead of failing every run.
    The result still becomes champion only through the promotion gate."""
    tuned = await latest_tuned_config(session)
    if tuned is not None and tuned.get("features") == "embedding" and not embeddings_available():
        log.warning("tuned configuration needs the embeddings extra; training the default")
        tuned = None
    return RouterConfig.from_dict({**(tuned or {}), "seed": seed})


async def run_tuning(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    database_url: str,
    n_trials: int | None,
    timeout_s: float | None = None,
    seed: int = 0,
    split_seed: int = 0,
    n_folds: int = 3,
    objective: Objective = "log_loss",
    study_name: str | None = None,
    features: Sequence[str] | None = None,
) -> tuple[TuningResult, TrainingRun]:
    """Tune on every recorded outcome (in a worker thread) and record the result; commits.

    Reads the outcomes in one short transaction, runs ``tune`` outside any transaction (a SQLite
    writer lock is never held while trials run), then writes the ``TrainingRun`` and commits.

    Raises:
        BadRequest: see ``tune``.
    """
    async with sessionmaker() as session:
        outcomes = await repository.all_outcomes(session)
        agent_prices = await learning_service.list_prices(session)
        await session.commit()
    samples = learning_service.to_samples(outcomes)
    result = await asyncio.to_thread(
        tune,
        samples,
        database_url=database_url,
        n_trials=n_trials,
        timeout_s=timeout_s,
        seed=seed,
        split_seed=split_seed,
        n_folds=n_folds,
        objective=objective,
        study_name=study_name,
        features=features,
        agent_prices=agent_prices,
    )
    async with sessionmaker() as session:
        run = await record_tuning(session, result)
        await session.commit()
    return result, run
