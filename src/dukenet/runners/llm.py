"""The ``llm`` agent: an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from httpx_sse import aconnect_sse

from dukenet.agents.models import Agent
from dukenet.agents.schemas import LLMAgentConfig
from dukenet.kit import netguard
from dukenet.kit.secrets import SecretBox, SecretError
from dukenet.runners.base import DeltaSink, Execution, ExecutionError, WorkItem, chat_messages

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class LLMExecutor:
    """Calls an agent's chat-completions endpoint with timeouts and retries on 429/5xx.

    ``client`` is owned by the caller (one per runner process). Backoff doubles from
    ``backoff_s`` and honours ``Retry-After`` when the server sends it. ``secrets`` decrypts
    API keys stored with the agent (``DUKENET_SECRET_KEY``); without it only keys named by
    ``api_key_env`` can be used.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        secrets: SecretBox | None = None,
        max_retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self._client = client
        self._secrets = secrets
        self._max_retries = max_retries
        self._backoff_s = backoff_s

    async def execute(self, agent: Agent, item: WorkItem) -> Execution:
        """Send the task as a user message (or a chat request's conversation after the agent's
        system prompt, with its temperature, max_tokens, stop and user) and return the
        assistant's answer.

        Raises:
            ExecutionError: the endpoint kept failing, or answered with no content.
        """
        config = LLMAgentConfig.model_validate(agent.config)
        headers = {"Content-Type": "application/json"}
        key = self._api_key(config)
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        messages = chat_messages(item, config.system_prompt)
        params = (item.chat or {}).get("params") or {}
        payload: dict[str, Any] = {
            "model": config.model,
            "messages": messages,
            "max_tokens": params.get("max_tokens") or config.max_tokens,
            "temperature": (
                config.temperature if params.get("temperature") is None else params["temperature"]
            ),
        }
        for name in ("stop", "user"):  # the buyer's, passed through when given
            if params.get(name) is not None:
                payload[name] = params[name]
        url = str(config.base_url).rstrip("/") + "/chat/completions"
        started = time.perf_counter()
        relay = _Relay(item.deltas, started)
        body: Any = None
        if item.deltas is not None:
            streamed = {**payload, "stream": True, "stream_options": {"include_usage": True}}
            # an endpoint that refuses the stream parameters (400/422) is asked plainly below
            with contextlib.suppress(_StreamRefused):
                body = await self._retrying(
                    url, lambda: self._stream_once(url, streamed, headers, relay)
                )
        if body is None:
            response = await self._retrying(url, lambda: self._post_once(url, payload, headers))
            try:
                body = response.json()
            except ValueError as exc:
                raise ExecutionError(f"malformed chat completion from {url}") from exc
            if item.deltas is not None:  # relayed in one piece
                with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
                    relay.send(body["choices"][0]["message"]["content"] or "")
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            choice = body["choices"][0]
            text = choice["message"]["content"] or ""
            usage = body.get("usage") or {}
            if not isinstance(text, str) or not isinstance(usage, dict):
                raise TypeError("content must be text and usage an object")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ExecutionError(f"malformed chat completion from {url}") from exc
        metadata: dict[str, Any] = {}
        if relay.first_ms is not None:  # the agent streamed: when its first piece came
            metadata["first_token_ms"] = round(relay.first_ms, 2)
        # "success" here only says an answer came back (an empty one is a failure): it is the
        # agent's own report, the weakest label an outcome can have (feedback.labels). The task's
        # evaluator, the buyer or a curator decide whether the answer was any good.
        return Execution(
            text=text,
            success=bool(text.strip()),
            latency_ms=latency_ms,
            metadata={
                **metadata,
                "model": body.get("model") or config.model,
                "finish_reason": choice.get("finish_reason"),
                "usage": {
                    k: usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
                },
            },
        )

    def handles(self, agent: Agent) -> bool:
        """Whether this executor can call ``agent`` here: its key is stored and this executor
        has the secret key to open it, or its ``api_key_env`` variable is set, or it has no key.
        A runner claims no task for an agent it cannot call (a remote runner never receives a
        stored key)."""
        try:
            config = LLMAgentConfig.model_validate(agent.config)
            if config.api_key_encrypted is not None:
                return self._secrets is not None
            self._api_key(config)
        except (ValueError, ExecutionError):
            return False
        return True

    def _api_key(self, config: LLMAgentConfig) -> str | None:
        """Return the agent's API key, decrypted now (never kept), or None if it has none.

        Raises:
            ExecutionError: the key cannot be had here (no or wrong secret key, unset variable,
                or a key stored on a server this runner cannot read it from).
        """
        if config.api_key_encrypted is not None:
            if self._secrets is None:
                raise ExecutionError("the agent's API key is stored encrypted; no secret key here")
            try:
                return self._secrets.decrypt(config.api_key_encrypted)
            except SecretError as exc:
                raise ExecutionError(f"the agent's API key: {exc}") from exc
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise ExecutionError(f"environment variable {config.api_key_env} is not set")
            return key
        if config.has_api_key:
            raise ExecutionError(
                "the agent's API key is stored on the server only; "
                "give it api_key_env to run it on a remote runner"
            )
        return None

    async def _retrying(self, url: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` until it returns, retrying transport errors and retryable statuses
        (``_Retry``) with doubling backoff from ``backoff_s`` (at least ``Retry-After``).

        Raises:
            ExecutionError: a refusal of the egress policy, a non-retryable status, or every
                try failed.
        """
        delay = self._backoff_s
        last_error = "no attempt"
        for attempt in range(self._max_retries + 1):
            try:
                return await call()
            except httpx.HTTPError as exc:
                if netguard.is_refusal(exc):  # the egress policy: retrying cannot help
                    raise ExecutionError(f"{url}: {exc}") from exc
                last_error = f"{type(exc).__name__}: {exc}"
            except _Retry as exc:
                last_error = exc.reason
                if exc.retry_after_s is not None:
                    delay = max(delay, exc.retry_after_s)
            if attempt < self._max_retries:
                await asyncio.sleep(delay)
                delay *= 2
        raise ExecutionError(f"giving up after {self._max_retries + 1} tries: {last_error}")

    async def _post_once(
        self, url: str, payload: dict[str, Any], headers: dict[str, str]
    ) -> httpx.Response:
        response = await self._client.post(url, json=payload, headers=headers)
        _check_status(url, response)
        return response

    async def _stream_once(
        self, url: str, payload: dict[str, Any], headers: dict[str, str], relay: _Relay
    ) -> dict[str, Any]:
        """Ask for a streamed answer and relay its pieces; return it as a completion body.
        An endpoint that answers with a plain completion instead is relayed in one piece.

        Raises:
            ExecutionError: the stream broke off after a piece was relayed (not retried here:
                the runner releases the task), carried an error, or ended without ``[DONE]``
                or a finish reason.
        """
        async with aconnect_sse(
            self._client, "POST", url, json=payload, headers=dict(headers)
        ) as source:
            response = source.response
            if response.status_code >= 400:
                await response.aread()
                if response.status_code in (400, 422):  # perhaps the stream parameters
                    raise _StreamRefused(f"{url} answered {response.status_code}")
                _check_status(url, response)
            media_type = response.headers.get("content-type", "").partition(";")[0].strip()
            if media_type != "text/event-stream":  # this endpoint does not stream
                await response.aread()
                try:
                    body: dict[str, Any] = response.json()
                    relay.send(body["choices"][0]["message"]["content"] or "")
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    raise ExecutionError(f"malformed chat completion from {url}") from exc
                return body
            answer = _StreamedAnswer()
            try:
                async for event in source.aiter_sse():
                    if event.data.strip() == "[DONE]":
                        answer.done = True
                        break
                    relay.send(answer.add(url, event.data))
            except httpx.HTTPError as exc:
                if relay.relayed:  # a retry would relay the answer twice
                    raise ExecutionError(f"the stream from {url} broke off: {exc}") from exc
                raise
            if not answer.done and answer.finish_reason is None:
                if relay.relayed:
                    raise ExecutionError(f"the stream from {url} ended before [DONE]")
                raise _Retry(f"the stream from {url} ended before [DONE]")
            return answer.body()


T = TypeVar("T")


class _StreamRefused(Exception):
    """The endpoint refused a request for a stream (400/422): it is asked once more plainly."""


class _Retry(Exception):
    """A try failed in a way another try may not (a retryable status)."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


def _check_status(url: str, response: httpx.Response) -> None:
    """Return if ``response`` succeeded (read its body first when it is streamed).

    Raises:
        _Retry: a retryable status (with ``Retry-After`` in seconds when the server sent it).
        ExecutionError: any other error status.
    """
    if response.status_code < 400:
        return
    if response.status_code not in RETRYABLE_STATUS:
        raise ExecutionError(f"{url} answered {response.status_code}: {response.text[:200]}")
    retry_after = response.headers.get("retry-after")
    seconds = None
    if retry_after and retry_after.replace(".", "", 1).isdigit():
        seconds = float(retry_after)
    raise _Retry(f"{url} answered {response.status_code}", seconds)


class _Relay:
    """The sink of one execution, counting what it relayed and when the first piece came."""

    def __init__(self, sink: DeltaSink | None, started: float) -> None:
        self._sink = sink
        self._started = started
        self.relayed = False
        self.first_ms: float | None = None

    def send(self, text: str) -> None:
        if not text or self._sink is None:
            return
        if self.first_ms is None:
            self.first_ms = (time.perf_counter() - self._started) * 1000
        self.relayed = True
        self._sink.send(text)


class _StreamedAnswer:
    """The ``chat.completion.chunk`` events of one streamed answer, added up."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.model: str | None = None
        self.done = False

    def add(self, url: str, data: str) -> str:
        """Add one event's data; return its new text ("" if none).

        Raises:
            ExecutionError: the event is not a chunk, or it carries an error.
        """
        try:
            chunk = json.loads(data)
            if "error" in chunk:
                raise ExecutionError(f"{url} streamed an error: {str(chunk['error'])[:200]}")
            self.model = chunk.get("model") or self.model
            if isinstance(chunk.get("usage"), dict):
                self.usage = chunk["usage"]
            text = ""
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) != 0:
                    continue
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    text += str(piece)
                if choice.get("finish_reason"):
                    self.finish_reason = str(choice["finish_reason"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise ExecutionError(f"malformed chat completion chunk from {url}") from exc
        self.parts.append(text)
        return text

    def body(self) -> dict[str, Any]:
        """Return the answer as a ``chat.completion`` body."""
        return {
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(self.parts)},
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self.usage,
        }
