"""LLM agents' API keys: stored encrypted, never shown, decrypted by the runner at call time,
replaced and removed by the operator; and the key box itself (rotation, the key file)."""

from __future__ import annotations

import stat
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dukenet.agents.models import Agent
from dukenet.config import Settings
from dukenet.kit.secrets import SECRET_KEY_FILE, SecretBox, SecretError, generate_key
from dukenet.kit.state import AppState
from dukenet.runners.base import WorkItem
from dukenet.runners.llm import LLMExecutor
from tests.factories import create_admin, register
from tests.llm_double import LLMDouble

KEY = "sk-live-0123456789abcdefWXYZ"
NEW_KEY = "sk-live-9876543210zyxwvuQRST"
ITEM = WorkItem(description="Say hi.", complexity=1)


async def register_llm(
    client: httpx.AsyncClient, operator: dict[str, str], base_url: str, **llm: Any
) -> httpx.Response:
    """POST an llm agent with extra ``llm`` configuration."""
    return await client.post(
        "/agents",
        headers=operator,
        json={
            "name": f"keyed-{uuid.uuid4().hex[:8]}",
            "kind": "llm",
            "llm": {"base_url": base_url, "model": "test-model", **llm},
        },
    )


async def stored_agent(state: AppState, agent_id: str) -> Agent:
    """Load the agent row as the runner does."""
    async with state.sessionmaker() as session:
        return (
            await session.execute(select(Agent).where(Agent.id == uuid.UUID(agent_id)))
        ).scalar_one()


async def authorization_sent(state: AppState, double: LLMDouble, agent_id: str) -> str | None:
    """Run the agent once as the in-process runner would; return the Authorization it sent."""
    agent = await stored_agent(state, agent_id)
    async with httpx.AsyncClient(timeout=5) as http:
        executor = LLMExecutor(http, secrets=SecretBox.from_settings(state.settings))
        await executor.execute(agent, ITEM)
    return double.requests[-1].headers.get("authorization")


class TestStoredKey:
    async def test_the_key_is_stored_encrypted_and_never_returned(
        self, client: httpx.AsyncClient, state: AppState, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        _, admin = await create_admin(state)
        created = await register_llm(client, operator, double.base_url, api_key=KEY)
        assert created.status_code == 201, created.text
        agent = created.json()
        assert agent["config"]["has_api_key"] is True
        assert agent["config"]["api_key_last4"] == "WXYZ"
        assert agent["config"]["api_key_env"] is None
        responses = [
            created,
            await client.get(f"/agents/{agent['id']}", headers=operator),
            await client.get(f"/agents/{agent['id']}", headers=admin),
            await client.get("/agents", headers=admin),
        ]
        for response in responses:
            assert response.status_code == 200 or response.status_code == 201
            assert KEY not in response.text and KEY[:-4] not in response.text
            assert "api_key_encrypted" not in response.text

        row = await stored_agent(state, agent["id"])
        token = row.config["api_key_encrypted"]
        assert KEY not in str(row.config)
        assert SecretBox.from_settings(state.settings).decrypt(token) == KEY
        with pytest.raises(SecretError):
            SecretBox([generate_key()]).decrypt(token)

        assert await authorization_sent(state, double, agent["id"]) == f"Bearer {KEY}"

    async def test_a_short_key_shows_no_characters(
        self, client: httpx.AsyncClient, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        created = await register_llm(client, operator, double.base_url, api_key="abc12345")
        assert created.status_code == 201, created.text
        assert created.json()["config"]["api_key_last4"] is None
        assert created.json()["config"]["has_api_key"] is True

    @pytest.mark.parametrize(
        ("llm", "field"),
        [
            ({"api_key": KEY, "api_key_env": "MY_KEY"}, "not both"),
            ({"api_key": "has space"}, "api_key"),
            ({"api_key": ""}, "api_key"),
            ({"api_key_encrypted": "gAAAA"}, "api_key_encrypted"),
        ],
        ids=["both", "space", "empty", "ciphertext-from-client"],
    )
    async def test_invalid_keys_are_422_naming_the_field(
        self, client: httpx.AsyncClient, llm: dict[str, Any], field: str
    ) -> None:
        _, operator = await register(client, role="agent")
        response = await register_llm(client, operator, "http://127.0.0.1:9/v1", **llm)
        assert response.status_code == 422
        assert field in response.text
        assert KEY not in response.text


class TestChangingTheKey:
    async def test_replace_switch_to_env_and_remove(
        self, client: httpx.AsyncClient, state: AppState, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        agent = (await register_llm(client, operator, double.base_url, api_key=KEY)).json()
        url = f"/agents/{agent['id']}"

        replaced = await client.patch(url, headers=operator, json={"llm": {"api_key": NEW_KEY}})
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["config"]["api_key_last4"] == "QRST"
        assert NEW_KEY not in replaced.text
        assert await authorization_sent(state, double, agent["id"]) == f"Bearer {NEW_KEY}"

        described = await client.patch(
            url, headers=operator, json={"description": "now cheaper", "base_price_sat": 500}
        )
        assert described.json()["description"] == "now cheaper"
        assert described.json()["base_price_sat"] == 500
        assert described.json()["config"]["has_api_key"] is True  # untouched

        by_env = await client.patch(
            url, headers=operator, json={"llm": {"api_key_env": "DUKENET_TEST_OTHER_KEY"}}
        )
        assert by_env.json()["config"]["has_api_key"] is False
        assert by_env.json()["config"]["api_key_env"] == "DUKENET_TEST_OTHER_KEY"
        assert "api_key_encrypted" not in (await stored_agent(state, agent["id"])).config or (
            (await stored_agent(state, agent["id"])).config["api_key_encrypted"] is None
        )

        keyed = await client.patch(url, headers=operator, json={"llm": {"api_key": KEY}})
        assert keyed.json()["config"]["api_key_env"] is None
        removed = await client.patch(url, headers=operator, json={"llm": {"api_key": None}})
        assert removed.status_code == 200
        assert removed.json()["config"]["has_api_key"] is False
        assert removed.json()["config"]["api_key_last4"] is None
        assert (await stored_agent(state, agent["id"])).config["api_key_encrypted"] is None
        assert await authorization_sent(state, double, agent["id"]) is None

    async def test_only_the_operator_or_an_admin_changes_an_agent(
        self, client: httpx.AsyncClient, state: AppState, double: LLMDouble
    ) -> None:
        _, operator = await register(client, role="agent")
        _, other = await register(client, role="agent")
        _, buyer = await register(client)
        _, admin = await create_admin(state)
        agent = (await register_llm(client, operator, double.base_url, api_key=KEY)).json()
        url = f"/agents/{agent['id']}"
        change = {"llm": {"api_key": NEW_KEY}}

        assert (await client.patch(url, json=change)).status_code == 401
        assert (await client.patch(url, headers=buyer, json=change)).status_code == 403
        assert (await client.patch(url, headers=other, json=change)).status_code == 403
        unknown = await client.patch(f"/agents/{uuid.uuid4()}", headers=admin, json=change)
        assert unknown.status_code == 404
        assert await authorization_sent(state, double, agent["id"]) == f"Bearer {KEY}"
        assert (await client.patch(url, headers=admin, json=change)).status_code == 200
        assert await authorization_sent(state, double, agent["id"]) == f"Bearer {NEW_KEY}"

    async def test_llm_settings_on_a_replay_agent_are_400_and_nulls_are_422(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        replay = await client.post(
            "/agents",
            headers=admin,
            json={"name": "r", "kind": "replay", "replay": {"model": "gpt-4-1106-preview"}},
        )
        url = f"/agents/{replay.json()['id']}"
        wrong_kind = await client.patch(url, headers=admin, json={"llm": {"model": "x"}})
        assert wrong_kind.status_code == 400 and "replay agent" in wrong_kind.json()["detail"]
        null_model = await client.patch(url, headers=admin, json={"llm": {"model": None}})
        assert null_model.status_code == 422 and "model cannot be null" in null_model.text


class TestSecretBox:
    def test_round_trip_is_authenticated(self) -> None:
        box = SecretBox([generate_key()])
        token = box.encrypt(KEY)
        assert KEY not in token
        assert box.decrypt(token) == KEY
        tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
        with pytest.raises(SecretError):
            box.decrypt(tampered)

    def test_rotation_keeps_old_tokens_readable_and_moves_them_to_the_new_key(self) -> None:
        old_key, new_key = generate_key(), generate_key()
        old_token = SecretBox([old_key]).encrypt(KEY)
        rotating = SecretBox([new_key, old_key])
        assert rotating.decrypt(old_token) == KEY
        assert SecretBox([new_key]).decrypt(rotating.encrypt(KEY)) == KEY
        rotated = rotating.rotate(old_token)
        assert SecretBox([new_key]).decrypt(rotated) == KEY
        with pytest.raises(SecretError):
            SecretBox([old_key]).decrypt(rotated)

    def test_settings_key_list_and_invalid_keys(self, tmp_path: Any) -> None:
        old_key, new_key = generate_key(), generate_key()
        token = SecretBox([old_key]).encrypt(KEY)
        settings = Settings(var_dir=tmp_path, secret_key=f"{new_key}, {old_key}")
        assert SecretBox.from_settings(settings).decrypt(token) == KEY
        assert not (tmp_path / SECRET_KEY_FILE).exists()
        with pytest.raises(ValueError, match="DUKENET_SECRET_KEY: key 2 is not a Fernet key"):
            SecretBox.from_settings(Settings(var_dir=tmp_path, secret_key=f"{new_key},short"))

    def test_without_a_setting_a_key_is_generated_once_with_owner_only_access(
        self, tmp_path: Any
    ) -> None:
        settings = Settings(var_dir=tmp_path / "var", secret_key="")
        token = SecretBox.from_settings(settings).encrypt(KEY)
        path = tmp_path / "var" / SECRET_KEY_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert SecretBox.from_settings(settings).decrypt(token) == KEY  # same key next time
