"""A scriptable OpenAI-compatible ``/v1/chat/completions`` server for tests.

A real HTTP server (stdlib ``ThreadingHTTPServer``) on 127.0.0.1 at a random port, served from a
background thread. Script it with :meth:`LLMDouble.script` to answer errors (429, 500, ...), hang,
or return malformed JSON before (or instead of) a proper completion; every request it received
is recorded in :attr:`LLMDouble.requests`.

    with LLMDouble() as double:
        double.script(Reply.error(429), Reply.error(429))   # then the default answer
        ... agent config base_url=double.base_url ...
        assert len(double.requests) == 3

Streaming: :meth:`Reply.streamed` answers in server-sent events (``chat.completion.chunk``
objects, written and flushed one by one, ``delay_s`` apart, then ``data: [DONE]``), whatever
was asked; an ``LLMDouble(streaming=True)`` also answers a request with ``"stream": true``
whose reply is a plain completion by streaming that completion's content word by word (its
usage in a last chunk when ``stream_options.include_usage`` asks for it), as OpenAI does.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

COMPLETIONS_PATH = "/v1/chat/completions"
DEFAULT_ANSWER = "def add(a, b):\n    return a + b"
DEFAULT_USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status and a raw body, optionally after hanging.

    ``hang=True`` holds the request open without answering until the double stops, so the
    client's own timeout is what ends it.
    """

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    hang: bool = False
    # server-sent events' data, each written and flushed on its own, delay_s apart
    events: tuple[str, ...] = ()
    delay_s: float = 0.0

    @classmethod
    def completion(
        cls,
        content: str | None = DEFAULT_ANSWER,
        *,
        model: str = "test-model",
        usage: dict[str, int] | None = None,
        finish_reason: str = "stop",
    ) -> Reply:
        """Return a well-formed chat completion with ``content`` and token ``usage``."""
        body = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": DEFAULT_USAGE if usage is None else usage,
        }
        return cls(status=200, body=json.dumps(body).encode())

    @classmethod
    def streamed(
        cls,
        pieces: list[str],
        *,
        model: str = "test-model",
        usage: dict[str, int] | None = None,
        finish_reason: str = "stop",
        delay_s: float = 0.0,
        cut_after: int | None = None,
    ) -> Reply:
        """Return a streamed completion: a role chunk, one chunk per piece, the finish
        reason, a usage chunk (``usage``, if given) and ``[DONE]``; ``cut_after`` closes the
        connection after that many events instead (a stream that breaks off)."""
        base = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
        }

        def chunk(delta: dict[str, str], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return json.dumps({**base, "choices": [choice]})

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in pieces]
        events.append(chunk({}, finish_reason))
        if usage is not None:
            events.append(json.dumps({**base, "choices": [], "usage": usage}))
        events.append("[DONE]")
        if cut_after is not None:
            events = events[:cut_after]
        return cls(
            status=200,
            headers=(("Content-Type", "text/event-stream"),),
            events=tuple(events),
            delay_s=delay_s,
        )

    def as_stream(self, *, include_usage: bool, delay_s: float = 0.0) -> Reply:
        """Return this plain completion streamed word by word (itself if it is not one)."""
        try:
            body = json.loads(self.body)
            content = body["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return self
        if self.status != 200 or not isinstance(content, str):
            return self
        return Reply.streamed(
            re.findall(r"\S+\s*|\s+", content),
            model=body.get("model", "test-model"),
            usage=body.get("usage") if include_usage else None,
            finish_reason=body["choices"][0].get("finish_reason") or "stop",
            delay_s=delay_s,
        )

    @classmethod
    def error(cls, status: int, message: str = "scripted error") -> Reply:
        """Return an OpenAI-style error body with ``status`` (429, 500, ...)."""
        body = {"error": {"message": message, "type": "test_double", "code": status}}
        return cls(status=status, body=json.dumps(body).encode())

    @classmethod
    def malformed(cls, body: bytes = b'{"choices": [{"message": ') -> Reply:
        """Return a 200 whose body is not a chat completion (truncated JSON by default)."""
        return cls(status=200, body=body)

    @classmethod
    def hanging(cls) -> Reply:
        """Never answer (until the double stops)."""
        return cls(hang=True)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the double received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """Return the request body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class _Script:
    replies: deque[Reply] = field(default_factory=deque)
    default: Reply = field(default_factory=Reply.completion)
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Condition = field(default_factory=threading.Condition)
    stopping: threading.Event = field(default_factory=threading.Event)
    streaming: bool = False  # stream plain completions to requests that ask for a stream
    stream_delay_s: float = 0.0  # between the events of such a stream

    def record(self, request: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(request)
            self.lock.notify_all()

    def next_reply(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self.record(request)
            return self.replies.popleft() if self.replies else self.default


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    script: _Script

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client hung up on a hanging reply (that is the point)."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Do not write an access log to stderr."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = RecordedRequest(
            method="POST",
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length),
        )
        script = self.server.script
        if self.path != COMPLETIONS_PATH:
            script.record(request)
            self._send(Reply.error(404, f"no route {self.path}"))
            return
        reply = script.next_reply(request)
        if reply.hang:
            script.stopping.wait()
            return
        asked = _asked_stream(request)
        if script.streaming and asked is not None and not reply.events:
            reply = reply.as_stream(include_usage=asked, delay_s=script.stream_delay_s)
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.events:  # no length: the body ends when the connection closes (HTTP/1.0)
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            for k, data in enumerate(reply.events):
                if k and reply.delay_s:
                    time.sleep(reply.delay_s)
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()
            return
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)


def _asked_stream(request: RecordedRequest) -> bool | None:
    """None if the request did not ask for a stream, else whether it asked for usage."""
    try:
        body = request.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("stream") is not True:
        return None
    return bool((body.get("stream_options") or {}).get("include_usage"))


class LLMDouble:
    """The server; a context manager that starts it on enter and stops it on exit."""

    def __init__(self, *, streaming: bool = False, stream_delay_s: float = 0.0) -> None:
        self._script = _Script(streaming=streaming, stream_delay_s=stream_delay_s)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The ``/v1`` base URL to put in an agent's ``llm.base_url``."""
        if self._server is None:
            raise RuntimeError("the double is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._script.lock:
            return list(self._script.requests)

    def wait_for_requests(self, count: int, timeout_s: float) -> bool:
        """Block until ``count`` requests have arrived (False if ``timeout_s`` passes first);
        from async code run it with ``asyncio.to_thread``."""
        with self._script.lock:
            return self._script.lock.wait_for(
                lambda: len(self._script.requests) >= count, timeout=timeout_s
            )

    def script(self, *replies: Reply, default: Reply | None = None) -> None:
        """Queue ``replies`` (answered in order); once they run out answer ``default`` (a
        completion of :data:`DEFAULT_ANSWER` unless given)."""
        with self._script.lock:
            self._script.replies.extend(replies)
            if default is not None:
                self._script.default = default

    def stream_when_asked(self, on: bool) -> None:
        """Whether a plain completion is streamed to a request that asks for a stream (an
        endpoint that cannot stream answers the plain completion anyway)."""
        with self._script.lock:
            self._script.streaming = on

    def start(self) -> LLMDouble:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.script = self._script
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging requests, stop serving and close the socket."""
        self._script.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> LLMDouble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
