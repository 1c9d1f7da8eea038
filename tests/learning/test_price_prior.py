"""The trainer feeds the agents' list prices to the router's price prior
(``RouterConfig.price_prior``): a version trained after an agent's price changed predicts that
agent differently, one trained without the prior does not."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import select

from dukenet.agents.models import AgentKind
from dukenet.kit.state import AppState
from dukenet.learning import service
from dukenet.learning.features import TaskFeatures
from dukenet.learning.models import ModelVersion
from dukenet.learning.router import RouterConfig
from dukenet.learning.routerbench import load_routerbench
from dukenet.runners.replay import ReplayExecutor
from dukenet.runners.worker import Runner
from tests.factories import create_admin, credit, register, replay_agent

MODELS = ("gpt-4-1106-preview", "mistralai/mistral-7b-chat", "zero-one-ai/Yi-34B-Chat")


async def _predictions(state: AppState, config: RouterConfig, key: str) -> np.ndarray:
    """Train one version with ``config`` and return its predictions for the three agents."""
    result = await service.train(
        state.sessionmaker,
        models_dir=Path(state.settings.models_dir),
        trigger="admin",
        trigger_key=key,
        config=config,
    )
    assert result is not None and result.version is not None
    async with state.sessionmaker() as session:
        row = (
            await session.execute(
                select(ModelVersion).where(ModelVersion.version == result.version.version)
            )
        ).scalar_one()
        router = await service.load_router(session, row)
    agents = sorted(router.agents)
    return router.predict_proba([TaskFeatures("What is 2 + 2?", 2)], agents)


class TestTrainerPassesListPrices:
    async def test_a_price_change_moves_the_prior_only_when_it_is_on(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        agents = [
            await replay_agent(client, admin, model=m, name=m, base_price_sat=1_000) for m in MODELS
        ]
        buyer, headers = await register(client)
        await credit(client, admin, buyer["id"], 10**10)
        for prompt in load_routerbench("train").prompts[:30]:
            response = await client.post(
                "/tasks", headers=headers, json={"description": prompt, "complexity": 1}
            )
            assert response.status_code == 201, response.text
        runner = Runner(state.sessionmaker, state.settings, {AgentKind.REPLAY: ReplayExecutor()})
        while await runner.run_once():
            pass

        on, off = RouterConfig(price_prior=True), RouterConfig(price_prior=False)
        before_on = await _predictions(state, on, "before-on")
        before_off = await _predictions(state, off, "before-off")
        changed = await client.patch(
            f"/agents/{agents[0]['id']}", headers=admin, json={"base_price_sat": 1_000_000}
        )
        assert changed.status_code == 200, changed.text
        after_on = await _predictions(state, on, "after-on")
        after_off = await _predictions(state, off, "after-off")

        np.testing.assert_allclose(after_off, before_off, atol=1e-9)
        assert np.abs(after_on - before_on).max() > 1e-3
