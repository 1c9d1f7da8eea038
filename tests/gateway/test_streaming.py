"""Streaming through the gateway: the agent's stream relayed as it comes to the official
``openai`` client, from the embedded runner and from a remote one, against a real server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from dukenet.agents.models import AgentKind
from dukenet.config import Settings
from dukenet.runners.llm import LLMExecutor
from dukenet.runners.remote import RemoteRunner
from tests.gateway.conftest import LiveServer
from tests.llm_double import DEFAULT_ANSWER, DEFAULT_USAGE, LLMDouble, Reply

pytestmark = pytest.mark.slow  # a real server per test (uvicorn on loopback)

PIECES = ["Streams ", "come ", "in ", "pieces", "."]
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Stream it, please."}]


def _client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.url + "/v1", api_key=live.buyer_key, max_retries=0)


def _task(live: LiveServer, task_id: str) -> dict[str, Any]:
    with live.api() as api:
        response = api.get(f"/tasks/{task_id}", headers=live.buyer)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _settled(live: LiveServer, task_id: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        task = _task(live, task_id)
        if task["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return task
        time.sleep(0.1)


def _ledger_ok(live: LiveServer) -> bool:
    with live.api() as api:
        return bool(api.get("/admin/ledger/check", headers=live.admin).json()["ok"])


class TestRelay:
    def test_the_agents_pieces_arrive_as_they_come_and_add_up_to_the_result(
        self, live: LiveServer, double: LLMDouble
    ) -> None:
        double.script(default=Reply.streamed(PIECES, usage=DEFAULT_USAGE, delay_s=0.3))
        stream = _client(live).chat.completions.create(
            model="duke", messages=ASK, stream=True, stream_options={"include_usage": True}
        )
        chunks = []
        status_at_first_piece = None
        for chunk in stream:
            chunks.append(chunk)
            content = chunk.choices[0].delta.content if chunk.choices else None
            if content and status_at_first_piece is None:
                task_id = chunk.id.removeprefix("chatcmpl-")
                status_at_first_piece = _task(live, _uuid(task_id))["status"]
        pieces = [c.choices[0].delta.content for c in chunks if c.choices]
        assert chunks[0].choices[0].delta.role == "assistant"
        assert [p for p in pieces if p] == PIECES  # one chunk per piece, in order
        # the first piece came while the agent still had 1.2 s of its answer to send
        assert status_at_first_piece == "executing"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 21
        extension = ([c for c in chunks if c.choices][-1].model_extra or {})["dukenet"]
        task = _settled(live, extension["task_id"])
        assert task["status"] == "completed"  # settled as a call that does not stream
        assert task["result"]["text"] == "".join(PIECES)
        sent = double.requests[-1].json()
        assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
        assert _ledger_ok(live)
        metrics = httpx.get(live.url + "/metrics").text
        assert "dukenet_gateway_first_chunk_seconds_count 1.0" in metrics.splitlines()

    def test_the_raw_stream_is_openai_chunks_ending_in_done(
        self, live: LiveServer, double: LLMDouble
    ) -> None:
        double.script(default=Reply.streamed(PIECES))
        with (
            httpx.Client(timeout=30) as http,
            http.stream(
                "POST",
                live.url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {live.buyer_key}"},
                json={"model": "duke", "messages": ASK, "stream": True},
            ) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [line for line in response.iter_lines() if line]
        assert all(line.startswith("data: ") for line in events)
        assert events[-1] == "data: [DONE]"
        chunks = [json.loads(line.removeprefix("data: ")) for line in events[:-1]]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        assert len({c["id"] for c in chunks}) == 1
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "".join(
            PIECES
        )
        assert "usage" not in chunks[-1]  # not asked for
        assert chunks[-1]["dukenet"]["price_sat"] > 0

    async def test_the_async_client_streams_too(self, live: LiveServer, double: LLMDouble) -> None:
        double.script(default=Reply.streamed(PIECES, delay_s=0.02))
        client = openai.AsyncOpenAI(
            base_url=live.url + "/v1", api_key=live.buyer_key, max_retries=0
        )
        stream = await client.chat.completions.create(model="duke", messages=ASK, stream=True)
        pieces = [c.choices[0].delta.content async for c in stream if c.choices]
        await client.close()
        assert [p for p in pieces if p] == PIECES

    def test_an_agent_that_does_not_stream_sends_one_chunk(
        self, live: LiveServer, double: LLMDouble
    ) -> None:
        double.stream_when_asked(False)  # it answers a plain completion though asked to stream
        stream = _client(live).chat.completions.create(model="duke", messages=ASK, stream=True)
        pieces = [c.choices[0].delta.content for c in stream if c.choices]
        assert [p for p in pieces if p] == [DEFAULT_ANSWER]

    def test_a_human_agents_answer_is_one_chunk(self, live: LiveServer) -> None:
        name = f"human-{uuid.uuid4().hex[:8]}"
        with live.api() as api:
            agent = api.post(
                "/agents",
                headers=live.admin,
                json={"name": name, "kind": "human", "base_price_sat": 10},
            )
            assert agent.status_code == 201, agent.text
        pieces: list[str | None] = []

        def call() -> None:
            stream = _client(live).chat.completions.create(model=name, messages=ASK, stream=True)
            pieces.extend(c.choices[0].delta.content for c in stream if c.choices)

        buyer = threading.Thread(target=call)
        buyer.start()
        with live.api() as api:  # the person behind the agent answers from the inbox
            deadline = time.monotonic() + 30
            while (
                claim := api.post(
                    "/runner/claim", headers=live.admin, json={"agent_id": agent.json()["id"]}
                ).json()
            ) is None:
                assert time.monotonic() < deadline, "the call's task never reached the inbox"
                time.sleep(0.05)
            answer = {
                "lease_token": claim["lease_token"],
                "idempotency_key": "person-1",
                "text": "A person's answer.",
                "success": True,
            }
            submitted = api.post(
                f"/runner/tasks/{claim['task_id']}/result", headers=live.admin, json=answer
            )
            assert submitted.status_code == 201, submitted.text
        buyer.join(timeout=30)
        assert [p for p in pieces if p] == ["A person's answer."]

    def test_a_stream_cut_off_then_retried_ends_in_an_error_and_settles_once(
        self, live: LiveServer, double: LLMDouble
    ) -> None:
        # the first attempt relays two pieces and breaks off; the retry answers in full
        double.script(Reply.streamed(PIECES, cut_after=3), default=Reply.streamed(["Other."]))
        stream = _client(live).chat.completions.create(model="duke", messages=ASK, stream=True)
        received = []
        with pytest.raises(openai.APIError) as raised:
            for chunk in stream:
                received.append(chunk.choices[0].delta.content if chunk.choices else None)
        assert [p for p in received if p] == PIECES[:2]
        assert "stream_interrupted" in str(raised.value.body) or "broke off" in str(raised.value)
        body: Any = raised.value.body
        task = _settled(live, body["dukenet"]["task_id"])
        assert task["status"] == "completed" and task["result"]["text"] == "Other."
        assert task["attempts"] == 2
        assert _ledger_ok(live)

    async def test_hanging_up_mid_stream_loses_no_escrow(
        self, live: LiveServer, double: LLMDouble
    ) -> None:
        double.script(default=Reply.streamed(PIECES, delay_s=0.3))
        client = openai.AsyncOpenAI(
            base_url=live.url + "/v1", api_key=live.buyer_key, max_retries=0
        )
        stream = await client.chat.completions.create(model="duke", messages=ASK, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                task_id = _uuid(chunk.id.removeprefix("chatcmpl-"))
                break
        await stream.close()  # hang up after the first piece
        await client.close()
        task = await asyncio.to_thread(_settled, live, task_id)
        assert task["status"] == "completed" and task["result"]["text"] == "".join(PIECES)
        with live.api() as api:
            balance = api.get("/users/me", headers=live.buyer).json()["balance_sat"]
        assert balance == 10_000_000 - task["price_sat"]
        assert _ledger_ok(live)


class TestRemoteRunner:
    @pytest.fixture
    def live_settings(self, live_settings: Settings) -> Settings:
        """No embedded runner: a remote runner, over the runner API, executes the task."""
        return live_settings.model_copy(update={"embedded_runners": 0})

    async def test_a_remote_runner_relays_the_stream_over_the_runner_api(
        self, live: LiveServer, double: LLMDouble
    ) -> None:
        double.script(default=Reply.streamed(PIECES, usage=DEFAULT_USAGE, delay_s=0.2))
        with live.api() as api:
            key = api.post("/api-keys", headers=live.admin, json={"name": "remote runner"})
        assert key.status_code == 201, key.text
        stop = asyncio.Event()
        async with (
            httpx.AsyncClient(
                base_url=live.url + "/api/v2", headers={"X-API-Key": key.json()["key"]}
            ) as server,
            httpx.AsyncClient() as llm_http,
        ):
            runner = RemoteRunner(server, {AgentKind.LLM: LLMExecutor(llm_http)}, poll_s=0.05)
            working = asyncio.create_task(runner.run_forever(stop))
            client = openai.AsyncOpenAI(
                base_url=live.url + "/v1", api_key=live.buyer_key, max_retries=0
            )
            stream = await client.chat.completions.create(
                model="duke",
                messages=ASK,
                stream=True,
                stream_options={"include_usage": True},
            )
            pieces, arrived = [], []
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                    arrived.append(time.monotonic())
                last = chunk
            await client.close()
            stop.set()
            await working
        assert "".join(pieces) == "".join(PIECES)
        assert len(pieces) >= 3  # relayed as it came, not in one piece at the end
        assert arrived[-1] - arrived[0] > 0.4  # the agent took 0.8 s from first to last piece
        assert last.usage is not None and last.usage.completion_tokens == 9
        task = _settled(live, _uuid(last.id.removeprefix("chatcmpl-")))
        assert task["status"] == "completed" and task["result"]["text"] == "".join(PIECES)


def _uuid(hex_id: str) -> str:
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"
