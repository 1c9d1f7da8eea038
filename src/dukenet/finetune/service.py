"""A fine-tune as the market sees it: a training run row and, when it succeeds, a ``local`` agent.

``finetune`` checks what can be checked before any training (the agent name is free, the owner
is an admin, the base and dataset are readable), records a ``running`` training run (trigger
``finetune-sft`` / ``finetune-dpo``, a ``FINETUNE_TRIGGERS`` member the router's triggers
skip), trains in a worker thread, then in one transaction marks the run ``succeeded`` with its
metrics (``artifact_bytes`` among them: the LoRA adapter artifact's size), artifact path and
content hash and registers the agent. A failure marks the run ``failed`` with the reason in its
log and registers nothing; the router's champion is never touched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.accounts import repository as accounts_repository
from dukenet.accounts.models import User, UserRole
from dukenet.agents import repository as agents_repository
from dukenet.agents import service as agents_service
from dukenet.agents.models import Agent
from dukenet.config import Settings
from dukenet.db import in_transaction
from dukenet.errors import DukenetError
from dukenet.finetune.base_model import resolve_base
from dukenet.finetune.errors import FinetuneError
from dukenet.finetune.trainer import (
    Method,
    TrainConfig,
    TrainResult,
    read_dataset,
    train_dpo,
    train_sft,
)
from dukenet.kit.orm import utcnow
from dukenet.learning.models import TrainingRun, TrainingRunStatus
from dukenet.runners.local import LocalAgentConfig

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


@dataclass(frozen=True)
class FinetuneRequest:
    """What to fine-tune: ``method`` on the export at ``dataset`` from ``base``, the result
    named ``output_name`` (the agent's name and the artifact directory's prefix).

    With ``register`` the result becomes a ``local`` agent owned by the admin ``owner_email``
    (default: the oldest active admin) at ``base_price_sat`` (default: the market's default);
    with ``shadow`` it is registered disabled (routed no buyer's task until an admin enables
    it) and marked ``shadow`` in its configuration.
    """

    method: Method
    dataset: Path
    output_name: str
    base: str = "smollm2"
    config: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    register: bool = True
    shadow: bool = False
    owner_email: str | None = None
    base_price_sat: int | None = None
    max_new_tokens: int = 256


@dataclass(frozen=True)
class FinetuneOutcome:
    """A finished fine-tune: its training run, what training produced, and the agent (None
    without ``register``)."""

    run_id: uuid.UUID
    result: TrainResult
    agent_id: uuid.UUID | None
    agent_enabled: bool

    def as_json(self) -> dict[str, Any]:
        """Return the outcome as JSON-able values (what the CLI prints)."""
        return {
            "training_run_id": str(self.run_id),
            "agent_id": str(self.agent_id) if self.agent_id else None,
            "agent_enabled": self.agent_enabled,
            **self.result.as_json(),
        }


def artifacts_dir(settings: Settings) -> Path:
    """Return the directory fine-tuned models are written under (``<var_dir>/finetune``)."""
    return settings.var_dir / "finetune"


async def finetune(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    request: FinetuneRequest,
) -> FinetuneOutcome:
    """Fine-tune, record the training run and (optionally) register the ``local`` agent.

    Blocking work (loading, training, saving) runs in a worker thread.

    Raises:
        FinetuneError: the name is invalid or taken, the owner is not an admin, the base
            cannot be loaded, the dataset is unreadable or too small to hold out a test split,
            or training ran out of memory; the run (when one was recorded) is marked failed.
    """
    if not NAME_PATTERN.match(request.output_name):
        raise FinetuneError(
            f"output name {request.output_name!r}: 1-80 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    resolve_base(request.base)
    read_dataset(request.dataset, request.method)
    if request.register:
        async with sessionmaker() as session:
            await _owner(session, request.owner_email)
            if await agents_repository.get_by_name(session, request.output_name) is not None:
                raise FinetuneError(f"agent name {request.output_name!r} is taken")
    run_id = await in_transaction(sessionmaker, lambda s: _start_run(s, request))
    output_dir = artifacts_dir(settings) / f"{request.output_name}-{run_id.hex[:12]}"
    train = train_sft if request.method is Method.SFT else train_dpo
    try:
        result = await asyncio.to_thread(
            train, request.dataset, output_dir, base=request.base, config=request.config
        )
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        await in_transaction(sessionmaker, lambda s: _fail_run(s, run_id, reason))
        raise
    try:
        agent = await in_transaction(
            sessionmaker, lambda s: _finish(s, settings, request, run_id, result)
        )
    except DukenetError as exc:  # e.g. the name was taken during training
        reason = f"not registered: {exc.message}"
        await in_transaction(sessionmaker, lambda s: _fail_run(s, run_id, reason))
        raise FinetuneError(f"the fine-tune succeeded but was not registered: {exc}") from exc
    return FinetuneOutcome(
        run_id=run_id,
        result=result,
        agent_id=agent.id if agent else None,
        agent_enabled=bool(agent and agent.is_enabled),
    )


async def _owner(session: AsyncSession, email: str | None) -> User:
    if email is not None:
        user = await accounts_repository.get_by_email(session, email.lower())
        if user is None or user.role is not UserRole.ADMIN or not user.is_active:
            raise FinetuneError(f"owner {email!r} is not an active admin")
        return user
    _, total = await accounts_repository.list_users(
        session, role=UserRole.ADMIN, is_active=True, limit=1, offset=0
    )
    if total == 0:
        raise FinetuneError("no active admin to own the agent: create one or pass --no-register")
    oldest, _ = await accounts_repository.list_users(
        session, role=UserRole.ADMIN, is_active=True, limit=1, offset=total - 1
    )
    return oldest[0]


async def _start_run(session: AsyncSession, request: FinetuneRequest) -> uuid.UUID:
    run = TrainingRun(
        trigger=f"finetune-{request.method.value}",
        trigger_key=f"finetune:{request.output_name}:{uuid.uuid4().hex}",
        status=TrainingRunStatus.RUNNING,
        split_seed=request.config.seed,
        config={
            "method": request.method.value,
            "base": request.base,
            "dataset": str(request.dataset),
            "output_name": request.output_name,
            "register": request.register,
            "shadow": request.shadow,
            **dataclasses.asdict(request.config),
        },
    )
    session.add(run)
    await session.flush()
    return run.id


async def _fail_run(session: AsyncSession, run_id: uuid.UUID, reason: str) -> None:
    run = await session.get(TrainingRun, run_id)
    if run is None:
        return
    run.status = TrainingRunStatus.FAILED
    run.log = reason[:10_000]
    run.finished_at = utcnow()


async def _finish(
    session: AsyncSession,
    settings: Settings,
    request: FinetuneRequest,
    run_id: uuid.UUID,
    result: TrainResult,
) -> Agent | None:
    run = await session.get(TrainingRun, run_id)
    assert run is not None
    run.status = TrainingRunStatus.SUCCEEDED
    run.outcomes_used = result.train_examples
    run.metrics = {
        **result.metrics,
        "train_examples": result.train_examples,
        "eval_examples": result.eval_examples,
        "steps": result.steps,
        "seconds": result.seconds,
        "seconds_per_step": result.seconds_per_step,
        "device": result.device,
        "dataset_sha256": result.dataset.get("sha256"),
        "artifact_bytes": result.artifact_bytes,
    }
    run.artifact_path = str(result.artifact_dir)
    run.artifact_sha256 = result.artifact_sha256
    run.finished_at = utcnow()
    run.log = f"{request.method.value} fine-tune of {request.base}: {result.steps} steps"
    if not request.register:
        return None
    owner = await _owner(session, request.owner_email)
    config = LocalAgentConfig(
        artifact_path=str(result.artifact_dir.resolve()),
        artifact_sha256=result.artifact_sha256,
        training_run_id=str(run_id),
        method=request.method.value,
        base=request.base,
        max_new_tokens=request.max_new_tokens,
        shadow=request.shadow,
    )
    return await agents_service.register_local(
        session,
        settings=settings,
        owner=owner,
        name=request.output_name,
        config=config.model_dump(mode="json"),
        description=(
            f"DukeNET's own model: {request.method.value.upper()} fine-tune of {request.base}"
        ),
        base_price_sat=request.base_price_sat,
        enabled=not request.shadow,
    )
