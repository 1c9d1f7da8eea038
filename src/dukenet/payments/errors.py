"""Errors of the payments domain."""

from __future__ import annotations

from dukenet.errors import DukenetError


class ProviderError(DukenetError):
    """The payment provider could not be reached or answered with an error (502)."""

    status_code = 502
