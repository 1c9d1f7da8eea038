"""Registering and listing agents."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User, UserRole
from dukenet.agents import repository
from dukenet.agents.models import Agent, AgentKind
from dukenet.agents.schemas import (
    AgentCreate,
    AgentSeriesPoint,
    AgentSeriesRead,
    AgentStatsRead,
    AgentUpdate,
    LLMAgentConfig,
)
from dukenet.config import Settings
from dukenet.errors import BadRequest, Conflict, DukenetError, Forbidden, NotFound
from dukenet.kit import netguard
from dukenet.kit.secrets import SecretBox, SecretError
from dukenet.ledger import service as ledger_service
from dukenet.ledger.models import LedgerAccountKind
from dukenet.ledger.schemas import MoneyBucket
from dukenet.market import reputation


async def register(
    session: AsyncSession,
    *,
    settings: Settings,
    owner: User,
    data: AgentCreate,
    secrets: SecretBox | None = None,
) -> Agent:
    """Register an agent owned by ``owner`` and open its earnings account.

    The agent starts at the reputation prior (no record yet) and, unless it names one, at the
    market's default base price. An ``llm`` agent's ``api_key`` is stored encrypted with
    ``secrets`` (default: the box of ``settings``), never in clear.

    Raises:
        Forbidden: a buyer tries to register an agent, or a non-admin a ``replay`` agent.
        BadRequest: the configuration for the agent's kind is missing.
        DukenetError: 422, an ``llm`` ``base_url`` the egress policy refuses.
        Conflict: the name is taken.
    """
    if owner.role is UserRole.BUYER:
        raise Forbidden("only agent operators and admins register agents")
    if data.kind == "replay":
        if owner.role is not UserRole.ADMIN:
            raise Forbidden("only admins register replay agents")
        if data.replay is None:
            raise BadRequest("replay agents need a 'replay' configuration")
        config = data.replay.model_dump(mode="json")
    elif data.kind == "human":
        config = {}
    else:
        if data.llm is None:
            raise BadRequest("llm agents need an 'llm' configuration")
        await check_base_url(str(data.llm.base_url), settings)
        llm = data.llm.model_dump(mode="json", exclude={"api_key"})
        config = _with_api_key(
            LLMAgentConfig.model_validate(llm),
            data.llm.api_key,
            secrets or SecretBox.from_settings(settings),
        )
    return await _add(
        session,
        settings=settings,
        owner=owner,
        agent=Agent(
            name=data.name,
            kind=AgentKind(data.kind),
            owner_id=owner.id,
            description=data.description,
            base_price_sat=data.base_price_sat or settings.default_base_price_sat,
            config=config,
        ),
    )


async def register_local(
    session: AsyncSession,
    *,
    settings: Settings,
    owner: User,
    name: str,
    config: dict[str, Any],
    description: str = "",
    base_price_sat: int | None = None,
    enabled: bool = True,
) -> Agent:
    """Register a ``local`` agent (a fine-tuned model ``runners.local`` serves; ``config`` is a
    ``LocalAgentConfig``) owned by the admin ``owner``, priced and rated like any agent.

    Raises:
        Forbidden: ``owner`` is not an admin.
        Conflict: the name is taken.
    """
    if owner.role is not UserRole.ADMIN:
        raise Forbidden("only admins register local agents")
    agent = Agent(
        name=name,
        kind=AgentKind.LOCAL,
        owner_id=owner.id,
        description=description,
        base_price_sat=base_price_sat or settings.default_base_price_sat,
        config=config,
        is_enabled=enabled,
    )
    return await _add(session, settings=settings, owner=owner, agent=agent)


async def _add(session: AsyncSession, *, settings: Settings, owner: User, agent: Agent) -> Agent:
    """Add ``agent`` at the reputation prior and open its earnings account."""
    if await repository.get_by_name(session, agent.name) is not None:
        raise Conflict(f"agent name {agent.name!r} is taken")
    prior = reputation.smoothed_success_rate(
        0,
        0,
        prior_successes=settings.reputation_prior_successes,
        prior_failures=settings.reputation_prior_failures,
    )
    agent.success_rate = prior
    agent.reputation_multiplier = reputation.reputation_multiplier(prior)
    session.add(agent)
    await session.flush()
    await ledger_service.open_account(
        session, ledger_service.agent_name(agent.id), LedgerAccountKind.AGENT, owner.id
    )
    return agent


async def check_base_url(url: str, settings: Settings) -> None:
    """Accept an ``llm`` agent's ``base_url`` under the egress policy of ``settings``
    (``kit.netguard``: no loopback, private, link-local or metadata target unless an allowed
    network holds it, no credentials in the URL; a resolvable name is resolved and checked).

    Raises:
        DukenetError: 422 naming ``llm.base_url`` and the reason.
    """
    try:
        await netguard.check_url_resolved(url, netguard.EgressPolicy.from_settings(settings))
    except netguard.EgressRefused as exc:
        raise DukenetError(f"llm.base_url: {exc}", status_code=422) from None


async def get(session: AsyncSession, agent_id: uuid.UUID) -> Agent:
    """Return an agent.

    Raises:
        NotFound: no agent with this id.
    """
    agent = await repository.get(session, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found")
    return agent


async def list_agents(
    session: AsyncSession, *, enabled_only: bool = False, owner_id: uuid.UUID | None = None
) -> Sequence[Agent]:
    """Return agents ordered by name."""
    return await repository.list_all(session, enabled_only=enabled_only, owner_id=owner_id)


async def set_enabled(
    session: AsyncSession, *, actor: User, agent_id: uuid.UUID, enabled: bool
) -> Agent:
    """Enable or disable an agent (its operator or an admin).

    Raises:
        NotFound: no such agent. Forbidden: the actor neither owns it nor is an admin.
    """
    agent = await get(session, agent_id)
    if actor.role is not UserRole.ADMIN and agent.owner_id != actor.id:
        raise Forbidden("only the agent's operator or an admin may change it")
    agent.is_enabled = enabled
    await session.flush()
    return agent


async def update(
    session: AsyncSession,
    *,
    settings: Settings,
    actor: User,
    agent_id: uuid.UUID,
    data: AgentUpdate,
    secrets: SecretBox | None = None,
) -> Agent:
    """Change an agent's description, base price or ``llm`` configuration (its operator or an
    admin). A new ``api_key`` is stored encrypted and replaces ``api_key_env``, and the other
    way round; ``api_key: null`` removes the stored key.

    Raises:
        NotFound: no such agent. Forbidden: the actor neither owns it nor is an admin.
        BadRequest: an ``llm`` configuration for an agent of another kind.
        DukenetError: 422, a new ``base_url`` the egress policy refuses.
    """
    agent = await get(session, agent_id)
    if actor.role is not UserRole.ADMIN and agent.owner_id != actor.id:
        raise Forbidden("only the agent's operator or an admin may change it")
    if data.description is not None:
        agent.description = data.description
    if data.base_price_sat is not None:
        agent.base_price_sat = data.base_price_sat
    if data.llm is not None:
        if agent.kind is not AgentKind.LLM:
            raise BadRequest(f"'llm' configuration given for a {agent.kind.value} agent")
        if data.llm.base_url is not None:
            await check_base_url(str(data.llm.base_url), settings)
        changes = data.llm.model_dump(
            mode="json", exclude_unset=True, exclude={"api_key", "api_key_env"}
        )
        config = LLMAgentConfig.model_validate({**agent.config, **changes})
        fields = data.llm.model_fields_set
        if "api_key_env" in fields:
            config.api_key_env = data.llm.api_key_env
            if data.llm.api_key_env is not None:
                config = _without_api_key(config)
        new_config = config.model_dump(mode="json")
        if "api_key" in fields:
            new_config = _with_api_key(
                config, data.llm.api_key, secrets or SecretBox.from_settings(settings)
            )
        agent.config = new_config  # a new dict, so the JSON column is seen as changed
    await session.flush()
    return agent


def _without_api_key(config: LLMAgentConfig) -> LLMAgentConfig:
    return config.model_copy(
        update={"api_key_encrypted": None, "has_api_key": False, "api_key_last4": None}
    )


def _with_api_key(
    config: LLMAgentConfig, api_key: SecretStr | None, secrets: SecretBox
) -> dict[str, Any]:
    """Return the stored form of ``config`` holding ``api_key`` encrypted (None: no key); a
    stored key and ``api_key_env`` exclude each other."""
    config = _without_api_key(config)
    if api_key is not None:
        raw = api_key.get_secret_value()
        config = config.model_copy(
            update={
                "api_key_env": None,
                "api_key_encrypted": secrets.encrypt(raw),
                "has_api_key": True,
                "api_key_last4": raw[-4:] if len(raw) >= 12 else None,
            }
        )
    return config.model_dump(mode="json")


@dataclass(frozen=True)
class KeyRotationReport:
    """What :func:`rotate_api_keys` did: ``scanned`` ``llm`` agents, of which ``keyed`` hold a
    stored API key; ``rotated`` keys re-encrypted under the newest key; ``undecryptable`` names
    (sorted) of agents whose key no configured key opens, left as they were."""

    scanned: int
    keyed: int
    rotated: int
    undecryptable: tuple[str, ...]


async def rotate_api_keys(session: AsyncSession, *, secrets: SecretBox) -> KeyRotationReport:
    """Re-encrypt every ``llm`` agent's stored API key under the newest key of ``secrets``.

    For retiring a key: with ``DUKENET_SECRET_KEY=NEW,OLD`` everywhere, once this has run (and
    committed) with nothing undecryptable, no stored key needs ``OLD`` any more. Each re-encrypted
    agent's row is locked (PostgreSQL) and its ``config`` replaced by a new dict with only
    ``api_key_encrypted`` changed. Only flushes: the caller's commit makes it one transaction.
    Idempotent: a second run re-encrypts again (new tokens, same plaintexts). A key that no
    configured key opens (made under a lost key, altered) raises nothing: its agent is left
    untouched and named in ``undecryptable``.
    """
    agents = await repository.list_all(session, kinds=[AgentKind.LLM])
    keyed = rotated = 0
    undecryptable: list[str] = []
    for listed in agents:
        if listed.config.get("api_key_encrypted") is None:
            continue
        agent = await repository.get(session, listed.id, for_update=True)
        token = None if agent is None else agent.config.get("api_key_encrypted")
        if agent is None or token is None:
            continue  # deleted or its key removed since it was listed
        keyed += 1
        try:
            new_token = secrets.rotate(token) if isinstance(token, str) else None
        except SecretError:
            new_token = None
        if new_token is None:
            undecryptable.append(agent.name)
            continue
        agent.config = {**agent.config, "api_key_encrypted": new_token}  # a new dict: persisted
        rotated += 1
    await session.flush()
    return KeyRotationReport(
        scanned=len(agents), keyed=keyed, rotated=rotated, undecryptable=tuple(undecryptable)
    )


async def stats(
    session: AsyncSession, *, settings: Settings, agents: Sequence[Agent]
) -> list[AgentStatsRead]:
    """Return each agent's finished tasks, success rate, earnings in satoshis (its ledger
    account) and p50/p95 latency in ms over all its outcomes.

    A success is what reputation and ``series`` count (``Outcome.succeeded``): the outcome's
    current label (the strongest source's quality, so a buyer's reject or a curator's relabel
    moves it) at least ``settings.success_threshold`` as configured now, not the stored
    ``Outcome.success`` (the threshold of whenever the outcome was last labelled).
    """
    summaries = await repository.outcome_summaries(
        session, [a.id for a in agents], success_threshold=settings.success_threshold
    )
    result = []
    for agent in agents:
        tasks, successes, latencies = summaries.get(agent.id, (0, 0, []))
        earnings = await ledger_service.balance(session, ledger_service.agent_name(agent.id))
        p50, p95 = (
            (float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95)))
            if latencies
            else (None, None)
        )
        result.append(
            AgentStatsRead(
                agent_id=agent.id,
                name=agent.name,
                tasks=tasks,
                successes=successes,
                success_rate=successes / tasks if tasks else None,
                reputation_multiplier=agent.reputation_multiplier,
                earnings_sat=earnings,
                latency_p50_ms=p50,
                latency_p95_ms=p95,
            )
        )
    return result


async def leaderboard(
    session: AsyncSession, *, settings: Settings, min_tasks: int = 1
) -> list[AgentStatsRead]:
    """Rank enabled agents by the smoothed success rate they are priced on (Beta prior, last
    ``reputation_window`` tasks), then by tasks; agents below ``min_tasks`` come last."""
    agents = await repository.list_all(session, enabled_only=True)
    rows = await stats(session, settings=settings, agents=agents)
    by_id = {a.id: a for a in agents}
    return sorted(
        rows,
        key=lambda r: (r.tasks < min_tasks, -by_id[r.agent_id].success_rate, -r.tasks, r.name),
    )


async def series(
    session: AsyncSession,
    *,
    settings: Settings,
    user: User,
    agent_id: uuid.UUID,
    bucket: MoneyBucket = MoneyBucket.DAY,
    days: int = 30,
    now: datetime | None = None,
) -> AgentSeriesRead:
    """Return one agent's record over the last ``days`` days in ``bucket``-wide UTC buckets (the
    grid of ``ledger_service.money_series``): per bucket its finished tasks, successes, success
    rate, buyers' ratings, and the smoothed success rate and price multiplier the reputation
    formula (``market.reputation``, the settings' window, prior and wash-trading weights) gives
    its last ``reputation_window`` outcomes before the bucket's end. The agent's operator and
    admins only.

    Bounded: three queries, at most ``reputation_window`` x (buckets + 1) outcomes read for the
    reputation, whatever the agent's volume.

    Raises:
        DukenetError: 422, ``days`` outside 1..``ledger_service.MAX_DAYS[bucket]``.
        NotFound: no such agent, or the caller neither operates it nor is an admin.
    """
    since_s, width, count = ledger_service.bucket_grid(bucket, days, now=now)
    agent = await repository.get(session, agent_id)
    if agent is None or (user.role is not UserRole.ADMIN and agent.owner_id != user.id):
        raise NotFound(f"agent {agent_id} not found")
    until_s = since_s + count * width
    grid = {"since_s": since_s, "until_s": until_s, "bucket_s": width}
    points = [
        AgentSeriesPoint(start=datetime.fromtimestamp(since_s + i * width, UTC))
        for i in range(count)
    ]
    threshold = settings.success_threshold
    for row in await repository.outcome_buckets(
        session, agent.id, success_threshold=threshold, **grid
    ):
        if 0 <= row.bucket < count:
            point = points[row.bucket]
            point.outcomes, point.successes = row.outcomes, row.successes
            point.success_rate = row.successes / row.outcomes if row.outcomes else None
    for rated in await repository.rating_buckets(session, agent.id, **grid):
        if 0 <= rated.bucket < count:
            points[rated.bucket].ratings = rated.ratings
            points[rated.bucket].mean_rating = rated.mean_rating
    window = settings.reputation_window
    evidence = await repository.reputation_evidence(
        session, agent.id, window=window, success_threshold=threshold, **grid
    )
    registered_s = agent.created_at.timestamp()
    seen = 0  # evidence[:seen] finished before the current bucket's end
    for i, point in enumerate(points):
        while seen < len(evidence) and evidence[seen].bucket <= i:
            seen += 1
        if since_s + (i + 1) * width <= registered_s:
            continue
        successes, total = reputation.weighted_counts(
            evidence[max(0, seen - window) : seen],
            owner_id=agent.owner_id,
            per_buyer_cap=settings.reputation_per_buyer_cap,
            pinned_weight=settings.reputation_pinned_weight,
        )
        rate = reputation.smoothed_success_rate(
            successes,
            total,
            prior_successes=settings.reputation_prior_successes,
            prior_failures=settings.reputation_prior_failures,
        )
        point.smoothed_success_rate = rate
        point.reputation_multiplier = reputation.reputation_multiplier(rate)
    return AgentSeriesRead(
        agent_id=agent.id,
        bucket=bucket,
        bucket_s=width,
        since=datetime.fromtimestamp(since_s, UTC),
        until=datetime.fromtimestamp(until_s, UTC),
        points=points,
    )
