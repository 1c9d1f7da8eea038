"""Domain errors: every error a user can cause is a ``DukenetError`` with an HTTP status."""

from __future__ import annotations


class DukenetError(Exception):
    """Base of every domain error; rendered as ``{"detail": message}`` with ``status_code``."""

    status_code: int = 400

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class BadRequest(DukenetError):
    """The request is well-formed but not acceptable (400)."""

    status_code = 400


class Unauthorized(DukenetError):
    """Missing, invalid or expired credentials (401)."""

    status_code = 401


class Forbidden(DukenetError):
    """Authenticated, but not allowed to do this (403)."""

    status_code = 403


class NotFound(DukenetError):
    """The resource does not exist or is not visible to the caller (404)."""

    status_code = 404


class Conflict(DukenetError):
    """The resource's state does not allow this (409)."""

    status_code = 409


class PaymentRequired(DukenetError):
    """The buyer's balance does not cover the price (402)."""

    status_code = 402


class ServiceUnavailable(DukenetError):
    """A dependency (the database) cannot be reached for now (503); retry after
    ``retry_after_s`` seconds (sent as ``Retry-After``)."""

    status_code = 503

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
