"""A loopback HTTP server that records webhook deliveries and answers scripted statuses."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request the receiver got: its headers (lower-cased names) and raw body."""

    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    statuses: deque[int]
    received: list[Received]
    lock: threading.Lock


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """No access log."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.received.append(
                Received({k.lower(): v for k, v in self.headers.items()}, body)
            )
            status = self.server.statuses.popleft() if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Receiver:
    """Context manager: serve on 127.0.0.1; ``statuses`` answers in order, then 200."""

    def __init__(self, *statuses: int) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.statuses = deque(statuses)
        self._server.received = []
        self._server.lock = threading.Lock()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The URL to register."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    @property
    def received(self) -> list[Received]:
        """The deliveries received so far."""
        with self._server.lock:
            return list(self._server.received)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
