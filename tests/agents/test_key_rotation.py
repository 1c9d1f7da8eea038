"""Rotating the secret key: stored API keys re-encrypted under the newest key, so the old key can
be dropped; keys no configured key opens are reported and left alone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.accounts.models import User, UserRole
from dukenet.agents import service
from dukenet.agents.models import Agent
from dukenet.agents.schemas import AgentCreate, LLMAgentCreate, ReplayAgentConfig
from dukenet.config import Settings
from dukenet.db import create_engine, create_sessionmaker
from dukenet.kit.secrets import SecretBox, SecretError, generate_key
from dukenet.runners.base import WorkItem
from dukenet.runners.llm import LLMExecutor
from tests.llm_double import LLMDouble

KEY = "sk-live-0123456789abcdefWXYZ"
OTHER_KEY = "sk-live-9876543210zyxwvuQRST"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the test database without the app: each step commits, as the CLI does."""
    engine = create_engine(database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def create_llm_agent(
    session: AsyncSession,
    settings: Settings,
    *,
    secrets: SecretBox,
    name: str,
    api_key: str | None,
    base_url: str = "http://127.0.0.1:9/v1",
) -> Agent:
    """Register an ``llm`` agent (its key encrypted with ``secrets``) for a new operator."""
    owner = User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x", role=UserRole.AGENT)
    session.add(owner)
    await session.flush()
    llm = LLMAgentCreate.model_validate(
        {"base_url": base_url, "model": "test-model", "api_key": api_key}
    )
    return await service.register(
        session,
        settings=settings,
        owner=owner,
        data=AgentCreate(name=name, kind="llm", llm=llm),
        secrets=secrets,
    )


async def stored_configs(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, dict[str, Any]]:
    """Return each agent's stored configuration by name, read in a fresh session."""
    async with sessionmaker() as session:
        return {a.name: a.config for a in (await session.execute(select(Agent))).scalars()}


async def rotate(
    sessionmaker: async_sessionmaker[AsyncSession], secrets: SecretBox
) -> service.KeyRotationReport:
    """Run the rotation in its own transaction, committed as ``dukenet agents rotate-keys`` does."""
    async with sessionmaker() as session:
        report = await service.rotate_api_keys(session, secrets=secrets)
        await session.commit()
    return report


class TestRotateApiKeys:
    async def test_old_keys_move_to_the_new_key_and_the_runner_still_reads_them(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        double: LLMDouble,
    ) -> None:
        k1, k2 = generate_key(), generate_key()
        async with sessions() as session:
            await create_llm_agent(
                session,
                settings,
                secrets=SecretBox([k1]),
                name="old-key",
                api_key=KEY,
                base_url=double.base_url,
            )
            await session.commit()
        before = (await stored_configs(sessions))["old-key"]

        report = await rotate(sessions, SecretBox.from_settings(_with_keys(settings, k2, k1)))
        assert report == service.KeyRotationReport(scanned=1, keyed=1, rotated=1, undecryptable=())
        after = (await stored_configs(sessions))["old-key"]
        token = after["api_key_encrypted"]
        assert token != before["api_key_encrypted"]
        assert SecretBox([k2]).decrypt(token) == KEY
        with pytest.raises(SecretError):
            SecretBox([k1]).decrypt(token)
        # Only the token changed: what the API shows of the key stays.
        assert {k: v for k, v in after.items() if k != "api_key_encrypted"} == {
            k: v for k, v in before.items() if k != "api_key_encrypted"
        }
        assert after["has_api_key"] is True and after["api_key_last4"] == "WXYZ"

        # A runner that no longer has K1 sends the same key.
        async with sessions() as session:
            agent = (await session.execute(select(Agent))).scalar_one()
        async with httpx.AsyncClient(timeout=5) as http:
            runner_box = SecretBox.from_settings(_with_keys(settings, k2))
            await LLMExecutor(http, secrets=runner_box).execute(
                agent, WorkItem(description="Say hi.", complexity=1)
            )
        assert double.requests[-1].headers.get("authorization") == f"Bearer {KEY}"

    async def test_running_twice_changes_nothing_but_the_token(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        k1, k2 = generate_key(), generate_key()
        async with sessions() as session:
            await create_llm_agent(
                session, settings, secrets=SecretBox([k1]), name="twice", api_key=KEY
            )
            await session.commit()
        box = SecretBox([k2, k1])
        await rotate(sessions, box)
        first = (await stored_configs(sessions))["twice"]

        again = await rotate(sessions, box)
        assert again == service.KeyRotationReport(scanned=1, keyed=1, rotated=1, undecryptable=())
        second = (await stored_configs(sessions))["twice"]
        assert SecretBox([k2]).decrypt(second["api_key_encrypted"]) == KEY
        assert {k: v for k, v in second.items() if k != "api_key_encrypted"} == {
            k: v for k, v in first.items() if k != "api_key_encrypted"
        }

    async def test_unknown_keys_are_reported_and_agents_without_keys_skipped(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        k1, k2, lost = generate_key(), generate_key(), generate_key()
        async with sessions() as session:
            await create_llm_agent(
                session, settings, secrets=SecretBox([k1]), name="a-known", api_key=KEY
            )
            await create_llm_agent(
                session, settings, secrets=SecretBox([lost]), name="b-lost", api_key=OTHER_KEY
            )
            await create_llm_agent(
                session, settings, secrets=SecretBox([k1]), name="c-keyless", api_key=None
            )
            admin = User(
                email=f"{uuid.uuid4().hex}@example.com", password_hash="x", role=UserRole.ADMIN
            )
            session.add(admin)
            await session.flush()
            await service.register(
                session,
                settings=settings,
                owner=admin,
                data=AgentCreate(
                    name="d-replay", kind="replay", replay=ReplayAgentConfig(model="gpt-4")
                ),
            )
            await session.commit()
        before = await stored_configs(sessions)

        report = await rotate(sessions, SecretBox([k2, k1]))
        assert report == service.KeyRotationReport(
            scanned=3, keyed=2, rotated=1, undecryptable=("b-lost",)
        )
        after = await stored_configs(sessions)
        assert SecretBox([k2]).decrypt(after["a-known"]["api_key_encrypted"]) == KEY
        assert after["b-lost"] == before["b-lost"]
        assert SecretBox([lost]).decrypt(after["b-lost"]["api_key_encrypted"]) == OTHER_KEY
        assert after["c-keyless"] == before["c-keyless"]
        assert after["c-keyless"]["api_key_encrypted"] is None
        assert after["d-replay"] == before["d-replay"]

    async def test_without_stored_keys_nothing_changes(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        report = await rotate(sessions, SecretBox([generate_key()]))
        assert report == service.KeyRotationReport(scanned=0, keyed=0, rotated=0, undecryptable=())


def _with_keys(settings: Settings, *keys: str) -> Settings:
    """Return ``settings`` with ``DUKENET_SECRET_KEY`` set to ``keys``, newest first."""
    return settings.model_copy(update={"secret_key": ",".join(keys)})
