"""Payment providers: one interface (``PaymentProvider``) for deposits and payouts.

``LedgerProvider`` (the default, ``DUKENET_PAYMENT_PROVIDER=ledger``) books everything in the
ledger only: deposits are an admin's credit (``POST /admin/users/{id}/credit``), and a payout out
of the platform is booked to ``external:payouts`` as paid at once. ``LightningProvider``
(``DUKENET_PAYMENT_PROVIDER=lightning``) speaks the REST API of an LNbits wallet
(``DUKENET_LIGHTNING_URL``, admin key ``DUKENET_LIGHTNING_API_KEY`` sent as ``X-Api-Key``):

- ``POST /api/v1/payments`` ``{"out": false, "amount": sat, "unit": "sat", "memo"}`` creates a
  deposit invoice: ``{"payment_hash", "payment_request"}``;
- ``POST /api/v1/payments/decode`` ``{"data": bolt11}`` reads a payout invoice:
  ``{"payment_hash", "amount_msat"}``;
- ``POST /api/v1/payments`` ``{"out": true, "bolt11"}`` pays it: ``{"payment_hash"}``;
- ``GET /api/v1/payments/{payment_hash}`` says whether it is paid: ``{"paid", "status"}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import httpx

from dukenet.config import Settings
from dukenet.errors import BadRequest, Conflict
from dukenet.payments.errors import ProviderError

EXTERNAL_PAYOUTS = "external:payouts"
EXTERNAL_LIGHTNING = "external:lightning"


class PaymentState(StrEnum):
    """What a provider knows of a payment or an invoice.

    ``unknown``: the provider has no payment with this hash (never sent, or an unknown invoice).
    """

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Invoice:
    """A deposit invoice: pay ``payment_request`` (BOLT11) to credit ``amount_sat``."""

    payment_hash: str
    payment_request: str
    amount_sat: int


@dataclass(frozen=True)
class PayoutTarget:
    """A checked payout destination: the payment hash to track (None when the provider books
    the payout in the ledger only) and the amount it must carry (None: any amount)."""

    payment_hash: str | None
    amount_sat: int | None


@dataclass(frozen=True)
class PaymentOutcome:
    """The result of paying a payout: its state and the provider's message on failure."""

    state: PaymentState
    message: str = ""


class PaymentProvider(Protocol):
    """Moves money between the platform and the outside world.

    ``name`` is stored with each deposit and payout; ``external_account`` is the ledger account
    (kind ``external``) standing for the outside world on this provider's side.
    """

    name: str
    external_account: str

    async def create_invoice(self, *, amount_sat: int, memo: str) -> Invoice:
        """Return a new invoice for a deposit of ``amount_sat``.

        Raises:
            Conflict: the provider takes no deposits (ledger-only: an admin credits wallets).
            ProviderError: the provider failed.
        """
        ...

    async def invoice_state(self, payment_hash: str) -> PaymentState:
        """Return whether a deposit invoice is paid (``succeeded``), waiting, or expired."""
        ...

    async def check_destination(self, destination_ref: str) -> PayoutTarget:
        """Check an external payout destination and return what paying it needs.

        Raises:
            BadRequest: the destination is not one this provider can pay.
            ProviderError: the provider failed.
        """
        ...

    async def pay(self, *, destination_ref: str, amount_sat: int) -> PaymentOutcome:
        """Pay ``amount_sat`` to ``destination_ref``: ``succeeded``, ``failed`` (nothing left the
        platform) or ``pending`` (in flight or not known: ask ``payment_state`` later)."""
        ...

    async def payment_state(self, payment_hash: str) -> PaymentState:
        """Return the state of an outgoing payment by its hash."""
        ...


class LedgerProvider:
    """Books deposits and payouts in the ledger only (no money moves outside DukeNET)."""

    name = "ledger"
    external_account = EXTERNAL_PAYOUTS

    async def create_invoice(self, *, amount_sat: int, memo: str) -> Invoice:
        """Refuse: with the ledger-only provider an admin credits wallets."""
        raise Conflict(
            "deposits are credited by an admin (POST /admin/users/{id}/credit) with the "
            "ledger-only payment provider; set DUKENET_PAYMENT_PROVIDER=lightning for invoices"
        )

    async def invoice_state(self, payment_hash: str) -> PaymentState:
        """Return ``unknown``: this provider issues no invoices."""
        return PaymentState.UNKNOWN

    async def check_destination(self, destination_ref: str) -> PayoutTarget:
        """Accept any reference: the payout is booked to ``external:payouts`` as given."""
        return PayoutTarget(payment_hash=None, amount_sat=None)

    async def pay(self, *, destination_ref: str, amount_sat: int) -> PaymentOutcome:
        """Return ``succeeded``: the ledger entry is the payment."""
        return PaymentOutcome(PaymentState.SUCCEEDED)

    async def payment_state(self, payment_hash: str) -> PaymentState:
        """Return ``succeeded``: ledger-only payouts are paid when booked."""
        return PaymentState.SUCCEEDED


class LightningProvider:
    """An LNbits-style Lightning wallet over HTTP (see the module docstring for the API).

    ``client`` carries the base URL, the ``X-Api-Key`` header and the timeouts; the caller owns
    it (``open_provider``).
    """

    name = "lightning"
    external_account = EXTERNAL_LIGHTNING

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        try:
            return await self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"the Lightning wallet did not answer {method} {path}: {type(exc).__name__}"
            ) from exc

    @staticmethod
    def _json(response: httpx.Response, *fields: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or any(not isinstance(data.get(f), str) for f in fields):
            raise ProviderError(
                f"the Lightning wallet answered {response.status_code} without {', '.join(fields)}"
            )
        return data

    @staticmethod
    def _detail(response: httpx.Response) -> str:
        try:
            data = response.json()
        except ValueError:
            return response.text[:200]
        detail = data.get("detail") if isinstance(data, dict) else None
        return str(detail)[:200] if detail else response.text[:200]

    async def create_invoice(self, *, amount_sat: int, memo: str) -> Invoice:
        """Create an incoming invoice of ``amount_sat`` (``POST /api/v1/payments``)."""
        response = await self._call(
            "POST",
            "/api/v1/payments",
            {"out": False, "amount": amount_sat, "unit": "sat", "memo": memo},
        )
        if response.status_code not in (200, 201):
            raise ProviderError(
                f"the Lightning wallet refused the invoice ({response.status_code}): "
                f"{self._detail(response)}"
            )
        data = self._json(response, "payment_hash")
        request = data.get("payment_request") or data.get("bolt11")
        if not isinstance(request, str) or not request:
            raise ProviderError("the Lightning wallet answered an invoice without payment_request")
        return Invoice(data["payment_hash"], request, amount_sat)

    async def _state(self, payment_hash: str) -> PaymentState:
        response = await self._call("GET", f"/api/v1/payments/{payment_hash}")
        if response.status_code == 404:
            return PaymentState.UNKNOWN
        if response.status_code != 200:
            raise ProviderError(
                f"the Lightning wallet could not say whether {payment_hash} is paid "
                f"({response.status_code}): {self._detail(response)}"
            )
        data = self._json(response)
        if data.get("paid") is True:
            return PaymentState.SUCCEEDED
        status = str(data.get("status") or data.get("details", {}).get("status") or "pending")
        return PaymentState.FAILED if status in ("failed", "expired") else PaymentState.PENDING

    async def invoice_state(self, payment_hash: str) -> PaymentState:
        """Return whether the deposit invoice ``payment_hash`` is paid."""
        return await self._state(payment_hash)

    async def payment_state(self, payment_hash: str) -> PaymentState:
        """Return the state of the outgoing payment ``payment_hash``."""
        return await self._state(payment_hash)

    async def check_destination(self, destination_ref: str) -> PayoutTarget:
        """Decode a BOLT11 invoice: its payment hash and whole-satoshi amount.

        Raises:
            BadRequest: not an invoice the wallet can decode, no amount, or a fractional sat.
        """
        response = await self._call("POST", "/api/v1/payments/decode", {"data": destination_ref})
        if 400 <= response.status_code < 500:
            raise BadRequest(
                f"destination_ref: not a Lightning invoice the wallet can pay: "
                f"{self._detail(response)}"
            )
        if response.status_code != 200:
            raise ProviderError(
                f"the Lightning wallet could not decode the invoice ({response.status_code})"
            )
        data = self._json(response, "payment_hash")
        amount_msat = data.get("amount_msat")
        if not isinstance(amount_msat, int) or amount_msat <= 0:
            raise BadRequest("destination_ref: the invoice must carry an amount")
        if amount_msat % 1000:
            raise BadRequest("destination_ref: the invoice's amount is not a whole satoshi")
        return PayoutTarget(payment_hash=data["payment_hash"], amount_sat=amount_msat // 1000)

    async def pay(self, *, destination_ref: str, amount_sat: int) -> PaymentOutcome:
        """Pay a BOLT11 invoice (``POST /api/v1/payments`` with ``out: true``).

        A 4xx or a 520 is a refused or failed payment; a timeout or another 5xx leaves it
        ``pending`` (it may have gone through: its state is asked later, never guessed).
        """
        try:
            response = await self.client.post(
                "/api/v1/payments", json={"out": True, "bolt11": destination_ref}
            )
        except httpx.HTTPError as exc:
            return PaymentOutcome(PaymentState.PENDING, f"no answer: {type(exc).__name__}")
        if response.status_code in (200, 201):
            data = self._json(response, "payment_hash")
            try:
                state = await self._state(data["payment_hash"])
            except ProviderError as exc:
                return PaymentOutcome(PaymentState.PENDING, exc.message)
            return PaymentOutcome(PaymentState.PENDING if state is PaymentState.UNKNOWN else state)
        message = f"{response.status_code}: {self._detail(response)}"
        if 400 <= response.status_code < 500 or response.status_code == 520:
            return PaymentOutcome(PaymentState.FAILED, message)
        return PaymentOutcome(PaymentState.PENDING, message)


@contextlib.asynccontextmanager
async def open_provider(settings: Settings) -> AsyncIterator[PaymentProvider]:
    """Yield the configured provider (``DUKENET_PAYMENT_PROVIDER``), closing its HTTP client."""
    if settings.payment_provider == "ledger":
        yield LedgerProvider()
        return
    async with httpx.AsyncClient(
        base_url=settings.lightning_url.rstrip("/"),
        headers={"X-Api-Key": settings.lightning_api_key.get_secret_value()},
        timeout=settings.lightning_timeout_s,
    ) as client:
        yield LightningProvider(client)
