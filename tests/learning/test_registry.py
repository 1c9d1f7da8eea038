"""The learning loop end to end on a real database: outcomes from executed tasks, the retraining
trigger, versions with artifacts and held-out metrics, promotion, rollback, and serving."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.agents.models import AgentKind
from dukenet.config import Settings
from dukenet.kit.orm import utcnow
from dukenet.kit.state import AppState
from dukenet.learning import service, triggers
from dukenet.learning.models import Outcome, TrainingRun, TrainingRunStatus
from dukenet.learning.routerbench import complexity_of, load_routerbench
from dukenet.learning.trainer import Trainer
from dukenet.runners.replay import ReplayExecutor
from dukenet.runners.worker import Runner
from tests.factories import create_admin, credit, register, replay_agent

MODELS = ("gpt-4-1106-preview", "mistralai/mistral-7b-chat", "zero-one-ai/Yi-34B-Chat")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Retrain every 30 outcomes so a few dozen tasks exercise the loop."""
    return settings.model_copy(update={"retrain_every_n": 30, "routing_seed": 7})


async def _market_with_outcomes(
    client: httpx.AsyncClient, state: AppState, n_tasks: int, start: int = 0
) -> dict[str, str]:
    _, admin = await create_admin(state)
    for model in MODELS:
        await replay_agent(client, admin, model=model, name=model, base_price_sat=1_000)
    buyer, headers = await register(client)
    await credit(client, admin, buyer["id"], 10**10)
    await _run_tasks(client, state, headers, n_tasks, start)
    return admin


async def _run_tasks(
    client: httpx.AsyncClient, state: AppState, buyer: dict[str, str], n: int, start: int
) -> None:
    train = load_routerbench("train")
    for prompt in train.prompts[start : start + n]:
        response = await client.post(
            "/tasks",
            headers=buyer,
            json={"description": prompt, "complexity": complexity_of(prompt)},
        )
        assert response.status_code == 201, response.text
    runner = Runner(state.sessionmaker, state.settings, {AgentKind.REPLAY: ReplayExecutor()})
    while await runner.run_once():
        pass


async def _two_versions(
    client: httpx.AsyncClient, state: AppState
) -> tuple[dict[str, str], int, int]:
    """Train versions 1 and 2 on 30 outcomes; return the admin, the champion and the other one."""
    admin = await _market_with_outcomes(client, state, 30)
    assert (await client.post("/model/train", headers=admin)).status_code == 201
    assert (await client.post("/model/train", headers=admin)).status_code == 201
    champion = (await client.get("/model/status", headers=admin)).json()["champion_version"]
    return admin, champion, 1 if champion == 2 else 2


async def _outcome_count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return len((await session.execute(select(Outcome.id))).all())


class TestTrigger:
    async def test_no_training_before_n_outcomes(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        await _market_with_outcomes(client, state, 29)
        assert await Trainer(state.sessionmaker, state.settings).run_once() is None

    async def test_trains_once_per_n_outcomes_and_logs_propensities(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        await _market_with_outcomes(client, state, 30)
        trainer = Trainer(state.sessionmaker, state.settings)
        first = await trainer.run_once()
        assert first is not None and first.version is not None
        assert first.version.version == 1 and first.version.outcomes_seen == 30
        assert first.version.promoted  # the first version has no champion to beat
        assert await trainer.run_once() is None  # nothing new: the trigger does not fire twice
        async with state.sessionmaker() as session:
            outcomes = (await session.execute(select(Outcome))).scalars().all()
        # Before the first model routing is uniform over the three agents.
        assert {round(o.propensity, 6) for o in outcomes} == {round(1 / 3, 6)}

    async def test_two_trainers_never_train_the_same_trigger(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        await _market_with_outcomes(client, state, 30)
        async with state.sessionmaker() as session:
            due = await triggers.due_trigger(session, state.settings, now=utcnow())
        assert due is not None and due.name == "outcomes"
        kwargs = {
            "models_dir": state.settings.models_dir,
            "trigger": due.name,
            "trigger_key": due.key,
            "config": service.RouterConfig(),
        }
        first = await service.train(state.sessionmaker, **kwargs)  # type: ignore[arg-type]
        second = await service.train(state.sessionmaker, **kwargs)  # type: ignore[arg-type]
        assert first is not None and second is None
        async with state.sessionmaker() as session:
            runs = (await session.execute(select(TrainingRun))).scalars().all()
        assert [r.status for r in runs] == [TrainingRunStatus.SUCCEEDED]


class TestRegistry:
    async def test_versions_metrics_promotion_and_rollback(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        admin = await _market_with_outcomes(client, state, 30)
        trainer = Trainer(state.sessionmaker, state.settings)
        await trainer.run_once()
        train = await client.post("/model/train", headers=admin)  # an admin's trigger
        assert train.status_code == 201, train.text
        assert train.json()["status"] == "succeeded"

        versions = (await client.get("/model/versions", headers=admin)).json()
        assert [v["version"] for v in versions] == [1, 2]
        for v in versions:
            for metric in ("accuracy", "precision", "recall", "f1", "roc_auc", "brier", "n"):
                assert metric in v["metrics"]
        second = versions[1]
        assert "champion_brier" in second["metrics"]  # compared with v1 on the same rows
        first_gate, second_gate = versions[0]["promotion"], second["promotion"]
        assert first_gate["rule"] == "first-model" and first_gate["promote"]
        assert versions[0]["calibration"] and versions[0]["ece"] is not None
        assert sum(b["count"] for b in versions[0]["calibration"]) == versions[0]["metrics"]["n"]
        # v2 is fitted on the same outcomes with the same settings: the same policy, so the
        # held-out doubly robust difference is exactly 0 on every resample: not worse than the
        # champion, so the guardrail gate lets it through.
        assert second_gate["rule"] == "guardrail" and second_gate["n_rows"] > 0
        assert (second_gate["difference"], second_gate["low"]) == (0.0, 0.0)
        assert second_gate["margin"] == state.settings.promotion_margin > 0
        assert second_gate["promote"] and second["promoted"]
        policy = second["metrics"]["policy"]
        assert policy["challenger"]["dr"] == policy["champion"]["dr"]
        assert policy["n_rows"] == second_gate["n_rows"] == policy["logging"]["n"]
        assert policy["weight_clip"] == state.settings.promotion_weight_clip == 5.0
        status = (await client.get("/model/status", headers=admin)).json()
        assert status["champion_version"] == 2
        assert status["last_promotion"]["rule"] == "guardrail"
        assert status["success_threshold"] == 0.5
        for v in (1, 2):
            assert (state.settings.models_dir / f"v{v}.skops").exists()

        curve = (await client.get("/model/metrics", headers=admin)).json()
        assert [p["outcomes_seen"] for p in curve["learning_curve"]] == [30, 30]
        point = curve["learning_curve"][1]
        assert point["policy_value"] == point["champion_policy_value"] is not None
        assert point["promotion_low"] == 0.0 and point["policy_rows"] == second_gate["n_rows"]
        assert curve["learning_curve"][0]["promotion_low"] is None
        assert 0.0 <= curve["rolling_success_rate"] <= 1.0 and curve["outcomes"] == 30

        promote = await client.post("/model/promote/2", headers=admin)
        assert promote.status_code == 200 and promote.json()["is_champion"]
        rollback = await client.post("/model/rollback", headers=admin)
        assert rollback.status_code == 200, rollback.text
        assert rollback.json()["version"] == 1
        status = (await client.get("/model/status", headers=admin)).json()
        assert status["champion_version"] == 1
        again = await client.post("/model/rollback", headers=admin)
        assert again.status_code == 409  # nothing before v1

    async def test_promote_unknown_version_is_404(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        assert (await client.post("/model/promote/99", headers=admin)).status_code == 404
        assert (await client.post("/model/rollback", headers=admin)).status_code == 409

    async def test_model_endpoints_are_admin_only(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, buyer = await register(client)
        for method, path in (
            ("GET", "/model/versions"),
            ("GET", "/model/status"),
            ("GET", "/model/metrics"),
            ("POST", "/model/train"),
            ("POST", "/model/promote/1"),
            ("POST", "/model/rollback"),
        ):
            assert (await client.request(method, path, headers=buyer)).status_code == 403
            assert (await client.request(method, path)).status_code == 401


class TestShadow:
    async def test_a_challenger_scores_live_tasks_without_acting(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        admin, champion, other = await _two_versions(client, state)
        empty = (await client.get("/model/shadow", headers=admin)).json()
        set_response = await client.post(f"/model/challenger/{other}", headers=admin)
        assert set_response.status_code == 200, set_response.text
        assert set_response.json()["challenger_version"] == other
        assert set_response.json()["tasks"] == 0 or empty["challenger_version"] is not None

        buyer, headers = await register(client)
        await credit(client, admin, buyer["id"], 10**10)
        await _run_tasks(client, state, headers, 20, start=100)
        tasks = (await client.get("/tasks", headers=headers)).json()["items"]
        for task in tasks:
            detail = (await client.get(f"/tasks/{task['id']}", headers=headers)).json()
            assert detail["routing"]["model_version"] == champion  # the champion acts
            assert detail["routing"]["shadow"]["model_version"] == other
        report = (await client.get("/model/shadow", headers=admin)).json()
        assert report["challenger_version"] == other
        assert report["finished"] == 20 and report["tasks"] == 20
        assert 0.0 <= report["agreement_rate"] <= 1.0
        assert report["matched"] == round(report["agreement_rate"] * 20)
        if report["matched"]:
            assert 0.0 <= report["challenger_success_snips"] <= 1.0

        assert (await client.delete("/model/challenger", headers=admin)).status_code == 204
        assert (await client.get("/model/shadow", headers=admin)).json()[
            "challenger_version"
        ] is None
        assert (await client.post("/model/challenger/99", headers=admin)).status_code == 404


class TestCanary:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"canary_share": 0.5})

    async def test_the_challenger_routes_its_share_of_live_tasks(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        admin, _, other = await _two_versions(client, state)
        assert (await client.post(f"/model/challenger/{other}", headers=admin)).status_code == 200

        buyer, headers = await register(client)
        await credit(client, admin, buyer["id"], 10**10)
        await _run_tasks(client, state, headers, 20, start=100)
        tasks = (await client.get("/tasks", headers=headers)).json()["items"]
        acted = []
        for task in tasks:
            routing = (await client.get(f"/tasks/{task['id']}", headers=headers)).json()["routing"]
            canary = routing["exploration"]["canary"]
            assert canary["model_version"] == other and canary["share"] == 0.5
            acted.append(canary["acted"])
            assert sum(c["propensity"] for c in routing["candidates"]) == pytest.approx(
                1.0, abs=1e-5
            )
            chosen = next(c for c in routing["candidates"] if c["agent_id"] == task["agent_id"])
            assert chosen["propensity"] == pytest.approx(routing["propensity"], abs=1e-6)
        assert any(acted) and not all(acted)

        # Without a challenger alias the champion routes alone.
        assert (await client.delete("/model/challenger", headers=admin)).status_code == 204
        await _run_tasks(client, state, headers, 3, start=200)
        latest = (await client.get("/tasks?limit=3", headers=headers)).json()["items"]
        for task in latest:
            routing = (await client.get(f"/tasks/{task['id']}", headers=headers)).json()["routing"]
            assert "canary" not in routing["exploration"]


class TestServing:
    async def test_new_tasks_are_routed_by_the_champion(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        await _market_with_outcomes(client, state, 30)
        await Trainer(state.sessionmaker, state.settings).run_once()
        _, admin = await create_admin(state)
        buyer, headers = await register(client)
        await credit(client, admin, buyer["id"], 10**9)
        response = await client.post(
            "/tasks", headers=headers, json={"description": "Fix the bug.", "complexity": 2}
        )
        task = response.json()
        assert task["model_version"] == 1
        receipt = task["routing"]
        assert receipt["model_version"] == 1
        assert len(receipt["candidates"]) == 3
        assert all(0 < c["p_success"] < 1 for c in receipt["candidates"])
        # Thompson sampling (the default): the receipt lists every candidate's propensity; they
        # sum to 1, the floor gives each at least floor / K, and the task logs its choice's.
        assert receipt["exploration"]["method"] == "thompson"
        propensities = {c["agent_id"]: c["propensity"] for c in receipt["candidates"]}
        assert sum(propensities.values()) == pytest.approx(1.0, abs=1e-5)
        floor = state.settings.thompson_floor
        # The exploration budget mixes the draws with the greedy choice (explore_share <= 1), so
        # the floor's share shrinks by that factor but never reaches 0.
        share = receipt["exploration"]["explore_share"]
        assert (
            0 < share <= 1 and receipt["exploration"]["budget"] == state.settings.exploration_budget
        )
        assert min(propensities.values()) >= share * floor / 3 - 1e-12 > 0
        assert task["propensity"] == pytest.approx(propensities[task["agent_id"]], abs=1e-6)
