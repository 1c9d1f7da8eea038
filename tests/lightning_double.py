"""A scriptable LNbits-style Lightning wallet server for tests.

A real HTTP server (stdlib ``ThreadingHTTPServer``) on 127.0.0.1 at a random port, serving the
four calls ``LightningProvider`` makes (``POST /api/v1/payments`` in and out,
``POST /api/v1/payments/decode``, ``GET /api/v1/payments/{hash}``), each checking the
``X-Api-Key`` header. Invoices are fake BOLT11 strings (``lnbcrt<sat>n1p<hash>``) that only this
double decodes.

    with LightningDouble() as ln:
        deposit = ...                      # DukeNET created an invoice on the double
        ln.settle_incoming(payment_hash)   # someone outside paid it
        bolt11 = ln.outside_invoice(2_000, outcome="fail")   # an operator's invoice to pay out to
        ln.script(500)                     # the next call answers 500
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

API_KEY = "test-lnbits-admin-key"
PAYMENTS = "/api/v1/payments"
Outcome = Literal["success", "fail", "pending"]


@dataclass
class _Invoice:
    amount_sat: int
    bolt11: str
    incoming: bool
    outcome: Outcome = "success"  # what paying an outside invoice does
    paid: bool = False
    failed: bool = False
    sent: bool = False  # an outgoing payment of it was made


@dataclass
class _State:
    invoices: dict[str, _Invoice] = field(default_factory=dict)
    scripted: deque[int] = field(default_factory=deque)
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    pay_calls: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


def _bolt11(amount_sat: int, payment_hash: str) -> str:
    return f"lnbcrt{amount_sat}n1p{payment_hash}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Do not write an access log to stderr."""

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _begin(self, method: str) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        state = self.server.state
        with state.lock:
            state.requests.append((method, self.path, body))
            scripted = state.scripted.popleft() if state.scripted else None
        if self.headers.get("X-Api-Key") != API_KEY:
            self._reply(401, {"detail": "Invalid adminkey."})
            return None
        if scripted is not None:
            self._reply(scripted, {"detail": f"scripted {scripted}"})
            return None
        return body if isinstance(body, dict) else {}

    def do_GET(self) -> None:
        if self._begin("GET") is None:
            return
        match = re.fullmatch(rf"{PAYMENTS}/([0-9a-f]+)", self.path)
        state = self.server.state
        with state.lock:
            invoice = state.invoices.get(match.group(1)) if match else None
            if invoice is None or (not invoice.incoming and not invoice.sent):
                self._reply(404, {"detail": "Payment does not exist."})
                return
            status = "success" if invoice.paid else "failed" if invoice.failed else "pending"
            self._reply(200, {"paid": invoice.paid, "status": status, "preimage": "00" * 32})

    def do_POST(self) -> None:
        body = self._begin("POST")
        if body is None:
            return
        state = self.server.state
        if self.path == f"{PAYMENTS}/decode":
            with state.lock:
                found = [(h, i) for h, i in state.invoices.items() if i.bolt11 == body.get("data")]
            if not found:
                self._reply(400, {"detail": "Failed to decode: invalid bolt11 invoice"})
                return
            payment_hash, invoice = found[0]
            self._reply(
                200, {"payment_hash": payment_hash, "amount_msat": invoice.amount_sat * 1000}
            )
        elif self.path == PAYMENTS and body.get("out") is False:
            amount = body.get("amount")
            if not isinstance(amount, int) or amount <= 0:
                self._reply(400, {"detail": "amount must be a positive integer"})
                return
            payment_hash = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
            with state.lock:
                state.invoices[payment_hash] = _Invoice(
                    amount, _bolt11(amount, payment_hash), incoming=True
                )
            self._reply(
                201,
                {"payment_hash": payment_hash, "payment_request": _bolt11(amount, payment_hash)},
            )
        elif self.path == PAYMENTS and body.get("out") is True:
            self._pay(str(body.get("bolt11")))
        else:
            self._reply(404, {"detail": f"no route {self.path}"})

    def _pay(self, bolt11: str) -> None:
        state = self.server.state
        with state.lock:
            found = [(h, i) for h, i in state.invoices.items() if i.bolt11 == bolt11]
            if not found or found[0][1].incoming:
                self._reply(400, {"detail": "Failed to decode: invalid bolt11 invoice"})
                return
            payment_hash, invoice = found[0]
            state.pay_calls[payment_hash] = state.pay_calls.get(payment_hash, 0) + 1
            if invoice.paid:
                self._reply(400, {"detail": "Invoice already paid."})
                return
            invoice.sent = True
            if invoice.outcome == "fail":
                invoice.failed = True
                self._reply(520, {"detail": "Payment failed: no route found"})
                return
            invoice.paid = invoice.outcome == "success"
        self._reply(201, {"payment_hash": payment_hash, "checking_id": payment_hash})


class LightningDouble:
    """The server; a context manager that starts it on enter and stops it on exit."""

    def __init__(self) -> None:
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The wallet's base URL (``DUKENET_LIGHTNING_URL``)."""
        if self._server is None:
            raise RuntimeError("the double is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """(method, path, JSON body) of every request so far, oldest first."""
        with self._state.lock:
            return list(self._state.requests)

    def outside_invoice(self, amount_sat: int, *, outcome: Outcome = "success") -> str:
        """Return a BOLT11 invoice of someone outside (a payout destination); paying it
        succeeds, fails (520) or stays pending, as ``outcome`` says."""
        payment_hash = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        bolt11 = _bolt11(amount_sat, payment_hash)
        with self._state.lock:
            self._state.invoices[payment_hash] = _Invoice(
                amount_sat, bolt11, incoming=False, outcome=outcome
            )
        return bolt11

    def payment_hash(self, bolt11: str) -> str:
        """Return the payment hash of an invoice the double knows."""
        with self._state.lock:
            return next(h for h, i in self._state.invoices.items() if i.bolt11 == bolt11)

    def settle_incoming(self, payment_hash: str) -> None:
        """Mark a deposit invoice as paid by someone outside."""
        with self._state.lock:
            self._state.invoices[payment_hash].paid = True

    def expire_incoming(self, payment_hash: str) -> None:
        """Mark a deposit invoice as expired unpaid."""
        with self._state.lock:
            self._state.invoices[payment_hash].failed = True

    def resolve_outgoing(self, payment_hash: str, *, success: bool) -> None:
        """Finish a pending outgoing payment (a payment's end is final: call it once)."""
        with self._state.lock:
            invoice = self._state.invoices[payment_hash]
            invoice.paid, invoice.failed = success, not success

    def is_paid(self, payment_hash: str) -> bool:
        """Whether the invoice with this hash is paid."""
        with self._state.lock:
            return self._state.invoices[payment_hash].paid

    def is_pending(self, payment_hash: str) -> bool:
        """Whether an outgoing payment of this invoice was made and is neither paid nor failed."""
        with self._state.lock:
            invoice = self._state.invoices[payment_hash]
            return invoice.sent and not invoice.paid and not invoice.failed

    def pay_calls(self, payment_hash: str) -> int:
        """How many times DukeNET asked to pay the invoice with this hash."""
        with self._state.lock:
            return self._state.pay_calls.get(payment_hash, 0)

    def script(self, *statuses: int) -> None:
        """Answer the next requests with these error statuses (500, 503, ...), in order."""
        with self._state.lock:
            self._state.scripted.extend(statuses)

    def start(self) -> LightningDouble:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.state = self._state
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> LightningDouble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
