"""The ``/v1`` gateway driven by the official ``openai`` client against a real server on
loopback, with the LLM double as the ``llm`` agent."""

from __future__ import annotations

import asyncio
import contextlib
import time

import openai
import pytest

from dukenet.config import Settings
from tests.gateway.conftest import LiveServer
from tests.llm_double import DEFAULT_ANSWER, DEFAULT_USAGE, LLMDouble, Reply

pytestmark = pytest.mark.slow  # a real server per test (uvicorn on loopback)

CONVERSATION = [
    {"role": "system", "content": "You write Python."},
    {"role": "user", "content": "Write a function that adds two numbers."},
    {"role": "assistant", "content": "In which language?"},
    {"role": "user", "content": "Python, please."},
]


def _client(live: LiveServer, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.url + "/v1", api_key=live.buyer_key, max_retries=0, **kwargs)


class TestCompletions:
    def test_a_routed_call_is_a_settled_task_and_passes_the_conversation(
        self, live: LiveServer, double: LLMDouble
    ) -> None:
        completion = _client(live).chat.completions.create(
            model="duke",
            messages=CONVERSATION,  # type: ignore[arg-type]
            temperature=0.25,
            max_tokens=64,
            stop=["\n\n\n"],
            user="end-user-7",
            extra_body={"dukenet": {"cost_weight": 0.2, "complexity": 2}},
        )
        assert completion.choices[0].message.content == DEFAULT_ANSWER
        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage is not None
        assert completion.usage.prompt_tokens == DEFAULT_USAGE["prompt_tokens"]
        assert completion.usage.completion_tokens == DEFAULT_USAGE["completion_tokens"]
        assert completion.model == live.agent["name"]
        extension = (completion.model_extra or {})["dukenet"]
        assert extension["agent"] == live.agent["name"]
        assert extension["price_sat"] == 1_000 * 2 * 1.2  # base x complexity x new agent's 1.2
        assert 0 < extension["propensity"] <= 1

        sent = double.requests[-1].json()
        assert sent["messages"] == CONVERSATION
        assert sent["temperature"] == 0.25
        assert sent["max_tokens"] == 64
        assert sent["stop"] == ["\n\n\n"]
        assert sent["user"] == "end-user-7"

        with live.api() as api:
            task = api.get(extension["receipt_url"].removeprefix("/api/v2"), headers=live.buyer)
        assert task.status_code == 200
        body = task.json()
        assert body["status"] == "completed"  # accepted for the buyer by default
        assert body["cost_weight"] == 0.2
        assert body["chat"]["messages"] == CONVERSATION
        assert {t["kind"] for t in body["transactions"]} >= {"escrow_hold", "escrow_release"}

    def test_a_model_name_pins_its_agent_and_an_unknown_one_is_404(self, live: LiveServer) -> None:
        client = _client(live)
        completion = client.chat.completions.create(
            model=live.agent["name"], messages=[{"role": "user", "content": "Hi there"}]
        )
        extension = (completion.model_extra or {})["dukenet"]
        with live.api() as api:
            task = api.get(f"/tasks/{extension['task_id']}", headers=live.buyer).json()
        assert task["routing"]["constraints"]["pinned"] is True
        with pytest.raises(openai.NotFoundError) as raised:
            client.chat.completions.create(
                model="no-such-agent", messages=[{"role": "user", "content": "Hi"}]
            )
        assert raised.value.code == "model_not_found"

    def test_unsupported_parameters_are_400_naming_them(self, live: LiveServer) -> None:
        client = _client(live)
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(
                model="duke",
                messages=[{"role": "user", "content": "Hi"}],
                tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            )
        assert raised.value.code == "unsupported_parameter"
        assert raised.value.param == "tools"
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(
                model="duke", messages=[{"role": "user", "content": "Hi"}], n=2
            )
        assert raised.value.param == "n"
        with live.api() as api:
            assert api.get("/tasks", headers=live.buyer).json()["total"] == 0

    def test_a_bad_key_is_an_authentication_error(self, live: LiveServer) -> None:
        client = openai.OpenAI(base_url=live.url + "/v1", api_key="dk_nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            client.models.list()

    def test_models_lists_duke_and_the_agents(self, live: LiveServer) -> None:
        names = [m.id for m in _client(live).models.list()]
        assert names[0] == "duke"
        assert live.agent["name"] in names

    def test_a_call_past_its_wait_is_504_and_the_task_goes_on(
        self, live: LiveServer, double: LLMDouble
    ) -> None:
        double.script(Reply.hanging())
        with pytest.raises(openai.APIStatusError) as raised:
            _client(live).chat.completions.create(
                model="duke",
                messages=[{"role": "user", "content": "Take your time"}],
                extra_body={"dukenet": {"timeout_s": 0.5}},
            )
        assert raised.value.status_code == 504
        task_id = raised.value.body["dukenet"]["task_id"]  # type: ignore[index, call-overload]
        with live.api() as api:
            task = api.get(f"/tasks/{task_id}", headers=live.buyer).json()
        assert task["status"] in ("assigned", "executing")
        assert task["escrow_sat"] > 0

    async def test_a_client_that_hangs_up_loses_no_escrow(
        self, live: LiveServer, double: LLMDouble
    ) -> None:
        double.script(Reply.hanging())  # the first try hangs until the runner's LLM timeout
        client = openai.AsyncOpenAI(
            base_url=live.url + "/v1", api_key=live.buyer_key, max_retries=0
        )
        call = asyncio.create_task(
            client.chat.completions.create(
                model="duke", messages=[{"role": "user", "content": "Hang up on me"}]
            )
        )
        # hang up once the agent is working on it (the task exists and is escrowed)
        assert await asyncio.to_thread(double.wait_for_requests, 1, 30)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        await client.close()
        with live.api() as api:
            deadline = time.monotonic() + 30
            while True:
                (task,) = api.get("/tasks", headers=live.buyer).json()["items"]
                if task["status"] in ("delivered", "completed") or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert task["status"] in ("delivered", "completed"), task
            assert api.get("/admin/ledger/check", headers=live.admin).json()["ok"] is True
            balance = api.get("/users/me", headers=live.buyer).json()["balance_sat"]
        assert balance == 10_000_000 - task["price_sat"]


class TestStreaming:
    def test_sync_stream_sends_openai_chunks(self, live: LiveServer) -> None:
        stream = _client(live).chat.completions.create(
            model="duke",
            messages=[{"role": "user", "content": "Stream it"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == DEFAULT_ANSWER
        assert chunks[0].choices[0].delta.role == "assistant"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.total_tokens == DEFAULT_USAGE["total_tokens"]

    async def test_async_client_streaming_and_not(self, live: LiveServer) -> None:
        client = openai.AsyncOpenAI(
            base_url=live.url + "/v1", api_key=live.buyer_key, max_retries=0
        )
        completion = await client.chat.completions.create(
            model="duke", messages=[{"role": "user", "content": "Async, please"}]
        )
        assert completion.choices[0].message.content == DEFAULT_ANSWER
        stream = await client.chat.completions.create(
            model="duke", messages=[{"role": "user", "content": "Async stream"}], stream=True
        )
        text = ""
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        assert text == DEFAULT_ANSWER
        await client.close()

    def test_a_failed_task_ends_the_stream_with_an_error(
        self, live: LiveServer, double: LLMDouble
    ) -> None:
        double.script(default=Reply.error(400, "bad prompt"))
        stream = _client(live).chat.completions.create(
            model="duke", messages=[{"role": "user", "content": "Fail"}], stream=True
        )
        with pytest.raises(openai.APIError) as raised:
            list(stream)
        assert "refunded" in str(raised.value)


class TestSettlement:
    @pytest.fixture
    def live_settings(self, live_settings: Settings) -> Settings:
        """A 1 h dispute window: a result waits for the buyer unless accepted in advance."""
        return live_settings.model_copy(update={"dispute_window_s": 3600.0})

    def test_the_gateway_accepts_by_default_and_can_leave_the_window_open(
        self, live: LiveServer
    ) -> None:
        client = _client(live)
        accepted = client.chat.completions.create(
            model="duke", messages=[{"role": "user", "content": "Accept it"}]
        )
        held = client.chat.completions.create(
            model="duke",
            messages=[{"role": "user", "content": "Let me check first"}],
            extra_body={"dukenet": {"accept": False}},
        )
        with live.api() as api:
            paid = api.get(
                f"/tasks/{(accepted.model_extra or {})['dukenet']['task_id']}",
                headers=live.buyer,
            ).json()
            task_id = (held.model_extra or {})["dukenet"]["task_id"]
            waiting = api.get(f"/tasks/{task_id}", headers=live.buyer).json()
            assert paid["status"] == "completed" and paid["accept_by"] is None
            assert waiting["status"] == "delivered" and waiting["accept_by"] is not None
            rejected = api.post(
                f"/tasks/{task_id}/reject", headers=live.buyer, json={"reason": "wrong"}
            )
            assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
            balance = api.get("/users/me", headers=live.buyer).json()["balance_sat"]
        assert balance == 10_000_000 - paid["price_sat"]  # the rejected call was refunded
