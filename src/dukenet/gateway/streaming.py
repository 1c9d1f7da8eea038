"""A streaming chat completion: the agent's answer relayed as server-sent events while it comes.

The request subscribes to its task in the process's :class:`~dukenet.events.stream.DeltaRelay`
and sends each piece the runner relays as a ``chat.completion.chunk``, while it waits for the
task as a non-streaming call does. Once the task is delivered, whatever the relay did not carry
(an agent that does not stream answers in one piece; a runner in a process the relay does not
reach) is sent from the stored result, so the chunks always add up to the stored answer; then
the finish reason with the ``dukenet`` extension, the usage if asked, and ``[DONE]``.

Only the pieces of the first attempt the request sees are relayed. If that attempt broke off and
the task was retried, the answer stored differs from what was sent: the stream ends with an
error naming the task (which settles as usual) instead of two answers run together.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from dukenet.events.stream import DeltaRelay
from dukenet.gateway.errors import GatewayError
from dukenet.tasks.models import Task


async def events(
    relay: DeltaRelay,
    task: Task,
    *,
    model: str,
    include_usage: bool,
    completion: Callable[[], Awaitable[dict[str, Any]]],
    on_first_content: Callable[[], None] | None = None,
) -> AsyncIterator[str]:
    """Yield the stream of ``task``'s answer: the role chunk at once, a chunk per relayed piece,
    then :func:`closing_frames` of the ``chat.completion`` body ``completion`` returns (or the
    error it raises, as one event); ``on_first_content`` is called as the first chunk with
    content goes out. Closing the iterator stops waiting; the task goes on."""
    base = _base(task, model)
    with relay.subscribe(task.id) as reader:
        yield sse({**base, "choices": [_choice({"role": "assistant", "content": ""})]})
        finished: asyncio.Future[Any] = asyncio.ensure_future(completion())
        woken: asyncio.Future[Any] | None = None
        sent: list[str] = []
        attempt: int | None = None
        try:
            while True:
                for delta in reader.take():
                    attempt = delta.attempt if attempt is None else attempt
                    if delta.attempt == attempt:
                        if not sent and on_first_content is not None:
                            on_first_content()
                        sent.append(delta.text)
                        yield sse({**base, "choices": [_choice({"content": delta.text})]})
                if finished.done():
                    break
                if woken is None or woken.done():
                    woken = asyncio.ensure_future(reader.wait())
                await asyncio.wait({finished, woken}, return_when=asyncio.FIRST_COMPLETED)
            try:
                body = finished.result()
            except GatewayError as exc:
                yield sse(exc.body())
                return
            frames = closing_frames(body, sent="".join(sent), include_usage=include_usage)
            whole = body["choices"][0]["message"]["content"]
            if not sent and whole and on_first_content is not None:
                on_first_content()  # the whole answer in one chunk (an agent that does not stream)
            for frame in frames:
                yield frame
        finally:
            finished.cancel()
            if woken is not None:
                woken.cancel()


def closing_frames(completion: dict[str, Any], *, sent: str, include_usage: bool) -> list[str]:
    """Return the end of a stream that has sent ``sent`` so far: the rest of the completion's
    content in one chunk (if any), the finish reason with the ``dukenet`` extension, the usage
    chunk if asked, ``[DONE]``; or one error event if the content does not begin with
    ``sent`` (the streamed attempt was not the one delivered)."""
    content: str = completion["choices"][0]["message"]["content"]
    if not content.startswith(sent):
        task_id = completion["dukenet"]["task_id"]
        error = GatewayError(
            f"the agent's stream broke off and task {task_id} was retried: its answer differs "
            f"from what was streamed; it settles as usual, read it at "
            f"{completion['dukenet']['receipt_url']}",
            502,
            code="stream_interrupted",
            dukenet=completion["dukenet"],
        )
        return [sse(error.body())]
    base = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
    }
    choice = completion["choices"][0]
    chunks: list[dict[str, Any]] = []
    if len(content) > len(sent):
        chunks.append({**base, "choices": [_choice({"content": content[len(sent) :]})]})
    chunks.append(
        {
            **base,
            "choices": [_choice({}, choice["finish_reason"])],
            "dukenet": completion["dukenet"],
        }
    )
    if include_usage:
        chunks.append({**base, "choices": [], "usage": completion["usage"]})
    return [sse(chunk) for chunk in chunks] + ["data: [DONE]\n\n"]


def _base(task: Task, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{task.id.hex}",
        "object": "chat.completion.chunk",
        "created": int(task.created_at.timestamp()),
        "model": model,
    }


def _choice(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish_reason}


def sse(data: dict[str, Any]) -> str:
    """Return one server-sent event carrying ``data`` as JSON."""
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"
