"""The ``llm`` executor against a real OpenAI-compatible HTTP server on loopback
(``tests.llm_double``): answers, retries on 429/5xx, timeouts, and malformed replies."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from dukenet.agents.models import Agent, AgentKind
from dukenet.kit.secrets import SecretBox, generate_key
from dukenet.runners.base import ExecutionError, WorkItem
from dukenet.runners.llm import LLMExecutor
from tests.llm_double import COMPLETIONS_PATH, DEFAULT_ANSWER, DEFAULT_USAGE, LLMDouble, Reply

ITEM = WorkItem(description="Write a python function to add two numbers.", complexity=3)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The runner's HTTP client, with a short timeout so a hanging server ends quickly."""
    async with httpx.AsyncClient(timeout=0.5) as client:
        yield client


def llm(base_url: str, **config: Any) -> Agent:
    """An (unsaved) LLM agent pointing at ``base_url``."""
    return Agent(
        name="llm-under-test",
        kind=AgentKind.LLM,
        config={"base_url": base_url, "model": "test-model", **config},
    )


class TestAnswers:
    async def test_the_assistant_message_is_the_answer_with_usage_in_metadata(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        agent = llm(double.base_url, system_prompt="Answer in Python.", max_tokens=64)

        execution = await LLMExecutor(http, backoff_s=0.01).execute(agent, ITEM)

        assert execution.text == DEFAULT_ANSWER
        assert execution.success is True
        assert execution.latency_ms is not None and execution.latency_ms >= 0
        assert execution.metadata == {
            "model": "test-model",
            "finish_reason": "stop",
            "usage": DEFAULT_USAGE,
        }
        [request] = double.requests
        assert request.path == COMPLETIONS_PATH
        assert request.headers["content-type"] == "application/json"
        assert "authorization" not in request.headers
        assert request.json() == {
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "Answer in Python."},
                {"role": "user", "content": ITEM.description},
            ],
            "max_tokens": 64,
            "temperature": 0.0,
        }

    async def test_the_api_key_comes_from_the_named_environment_variable(
        self, double: LLMDouble, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        agent = llm(double.base_url, api_key_env="DUKENET_TEST_LLM_KEY")
        monkeypatch.delenv("DUKENET_TEST_LLM_KEY", raising=False)
        with pytest.raises(ExecutionError, match="DUKENET_TEST_LLM_KEY is not set"):
            await LLMExecutor(http, backoff_s=0.01).execute(agent, ITEM)
        assert double.requests == []

        monkeypatch.setenv("DUKENET_TEST_LLM_KEY", "sk-test-123")
        await LLMExecutor(http, backoff_s=0.01).execute(agent, ITEM)
        [request] = double.requests
        assert request.headers["authorization"] == "Bearer sk-test-123"

    async def test_a_stored_key_is_decrypted_at_call_time(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        box = SecretBox([generate_key()])
        agent = llm(double.base_url, api_key_encrypted=box.encrypt("sk-stored-456"))
        await LLMExecutor(http, secrets=box, backoff_s=0.01).execute(agent, ITEM)
        [request] = double.requests
        assert request.headers["authorization"] == "Bearer sk-stored-456"

    async def test_a_stored_key_that_cannot_be_decrypted_fails_before_any_call(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        token = SecretBox([generate_key()]).encrypt("sk-stored-456")
        agent = llm(double.base_url, api_key_encrypted=token, has_api_key=True)
        other = SecretBox([generate_key()])
        with pytest.raises(ExecutionError, match="cannot be decrypted"):
            await LLMExecutor(http, secrets=other, backoff_s=0.01).execute(agent, ITEM)
        with pytest.raises(ExecutionError, match="no secret key here"):
            await LLMExecutor(http, backoff_s=0.01).execute(agent, ITEM)
        # What a remote runner sees over the API: the key exists, but only on the server.
        redacted = llm(double.base_url, has_api_key=True, api_key_last4="t-456")
        with pytest.raises(ExecutionError, match="stored on the server only"):
            await LLMExecutor(http, secrets=other, backoff_s=0.01).execute(redacted, ITEM)
        assert double.requests == []

    @pytest.mark.parametrize("content", ["", "   \n", None])
    async def test_an_empty_answer_is_an_unsuccessful_execution(
        self, double: LLMDouble, http: httpx.AsyncClient, content: str | None
    ) -> None:
        double.script(Reply.completion(content))
        execution = await LLMExecutor(http, backoff_s=0.01).execute(llm(double.base_url), ITEM)
        assert execution.success is False
        assert execution.text == (content or "")


class TestRetries:
    async def test_rate_limits_are_retried_until_an_answer(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        double.script(Reply.error(429), Reply.error(429))
        execution = await LLMExecutor(http, backoff_s=0.01).execute(llm(double.base_url), ITEM)
        assert execution.text == DEFAULT_ANSWER
        assert len(double.requests) == 3
        assert all(r.json() == double.requests[0].json() for r in double.requests)

    async def test_a_server_error_then_an_answer_succeeds(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        double.script(Reply.error(500))
        execution = await LLMExecutor(http, backoff_s=0.01).execute(llm(double.base_url), ITEM)
        assert execution.success is True
        assert len(double.requests) == 2

    async def test_a_persistent_server_error_gives_up_after_the_retries(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        double.script(default=Reply.error(500))
        executor = LLMExecutor(http, max_retries=2, backoff_s=0.01)
        with pytest.raises(ExecutionError, match=r"giving up after 3 tries: .* answered 500"):
            await executor.execute(llm(double.base_url), ITEM)
        assert len(double.requests) == 3

    async def test_a_client_error_is_not_retried(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        double.script(Reply.error(400, "bad model"))
        with pytest.raises(ExecutionError, match=r"answered 400: .*bad model"):
            await LLMExecutor(http, backoff_s=0.01).execute(llm(double.base_url), ITEM)
        assert len(double.requests) == 1

    async def test_a_hanging_server_times_out_and_is_retried(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        double.script(Reply.hanging())
        execution = await LLMExecutor(http, backoff_s=0.01).execute(llm(double.base_url), ITEM)
        assert execution.text == DEFAULT_ANSWER
        assert len(double.requests) == 2

    async def test_a_server_that_always_hangs_is_an_execution_error(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        double.script(default=Reply.hanging())
        executor = LLMExecutor(http, max_retries=1, backoff_s=0.01)
        with pytest.raises(ExecutionError, match="giving up after 2 tries: ReadTimeout"):
            await executor.execute(llm(double.base_url), ITEM)
        assert len(double.requests) == 2

    async def test_an_unreachable_endpoint_is_an_execution_error(
        self, http: httpx.AsyncClient
    ) -> None:
        with socket.socket() as sock:  # a port nobody listens on once this socket is closed
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        executor = LLMExecutor(http, max_retries=1, backoff_s=0.01)
        with pytest.raises(ExecutionError, match="ConnectError"):
            await executor.execute(llm(f"http://127.0.0.1:{port}/v1"), ITEM)


class TestMalformedReplies:
    @pytest.mark.parametrize(
        "body",
        [
            b'{"choices": [{"message": ',
            b"<html>502 Bad Gateway</html>",
            b'{"choices": []}',
            b'{"object": "chat.completion"}',
            b'[{"message": {"content": "hi"}}]',
            b'{"choices": [{"message": {"content": 42}}]}',
            b'{"choices": [{"message": {"content": "hi"}}], "usage": "lots"}',
        ],
        ids=["truncated", "html", "empty-choices", "no-choices", "list", "non-text", "bad-usage"],
    )
    async def test_a_reply_that_is_not_a_chat_completion_is_an_execution_error(
        self, double: LLMDouble, http: httpx.AsyncClient, body: bytes
    ) -> None:
        double.script(Reply.malformed(body))
        with pytest.raises(ExecutionError, match="malformed chat completion"):
            await LLMExecutor(http, backoff_s=0.01).execute(llm(double.base_url), ITEM)
        assert len(double.requests) == 1


class _Pieces:
    """A ``DeltaSink`` that records what it is sent."""

    def __init__(self) -> None:
        self.pieces: list[str] = []

    def send(self, text: str) -> None:
        self.pieces.append(text)


def _streaming(sink: _Pieces) -> WorkItem:
    return WorkItem(description="Stream it.", complexity=1, deltas=sink)


class TestStreaming:
    async def test_pieces_are_relayed_in_order_and_the_answer_is_their_sum(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        pieces = ["def ", "add(a, b):", "\n    return ", "a + b"]
        double.script(default=Reply.streamed(pieces, usage=DEFAULT_USAGE, delay_s=0.01))
        sink = _Pieces()

        execution = await LLMExecutor(http, backoff_s=0.01).execute(
            llm(double.base_url), _streaming(sink)
        )

        assert sink.pieces == pieces
        assert execution.text == "".join(pieces)
        assert execution.metadata["usage"] == DEFAULT_USAGE
        assert execution.metadata["finish_reason"] == "stop"
        assert 0 < execution.metadata["first_token_ms"] <= execution.latency_ms
        sent = double.requests[-1].json()
        assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}

    async def test_an_endpoint_that_does_not_stream_is_relayed_in_one_piece(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        sink = _Pieces()  # the double (not streaming) answers a plain completion
        execution = await LLMExecutor(http).execute(llm(double.base_url), _streaming(sink))
        assert sink.pieces == [DEFAULT_ANSWER] and execution.text == DEFAULT_ANSWER

    async def test_a_stream_that_breaks_off_after_a_piece_is_not_retried(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        double.script(Reply.streamed(["half ", "an answer"], cut_after=2))
        sink = _Pieces()
        with pytest.raises(ExecutionError, match="ended before"):
            await LLMExecutor(http, backoff_s=0.01).execute(llm(double.base_url), _streaming(sink))
        assert sink.pieces == ["half "]
        assert len(double.requests) == 1  # another try would relay the answer twice

    async def test_a_failure_before_the_first_piece_is_retried(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        double.script(
            Reply.error(429),
            Reply.streamed(["never"], cut_after=1),  # only the role chunk, then closed
            Reply.streamed(["whole"]),
        )
        sink = _Pieces()
        execution = await LLMExecutor(http, backoff_s=0.01).execute(
            llm(double.base_url), _streaming(sink)
        )
        assert execution.text == "whole" and sink.pieces == ["whole"]
        assert len(double.requests) == 3

    async def test_an_error_event_fails_the_execution(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        error = Reply(
            headers=(("Content-Type", "text/event-stream"),),
            events=('{"error": {"message": "overloaded"}}',),
        )
        double.script(error)
        with pytest.raises(ExecutionError, match="overloaded"):
            await LLMExecutor(http, max_retries=0).execute(
                llm(double.base_url), _streaming(_Pieces())
            )

    async def test_an_endpoint_that_refuses_stream_parameters_is_asked_plainly(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        double.script(Reply.error(400, "Unrecognized request argument: stream_options"))
        sink = _Pieces()
        execution = await LLMExecutor(http, backoff_s=0.01).execute(
            llm(double.base_url), _streaming(sink)
        )
        assert execution.text == DEFAULT_ANSWER and sink.pieces == [DEFAULT_ANSWER]
        first, second = (r.json() for r in double.requests)
        assert first["stream"] is True and "stream" not in second
        assert "stream_options" not in second

    async def test_a_plain_request_that_is_refused_too_fails(
        self, double: LLMDouble, http: httpx.AsyncClient
    ) -> None:
        double.script(default=Reply.error(400, "bad prompt"))
        with pytest.raises(ExecutionError, match="400"):
            await LLMExecutor(http, backoff_s=0.01).execute(
                llm(double.base_url), _streaming(_Pieces())
            )
        assert len(double.requests) == 2
