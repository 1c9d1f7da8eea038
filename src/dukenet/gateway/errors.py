"""OpenAI-style errors of the ``/v1`` surface: ``{"error": {"message", "type", "param",
"code"}}`` with the HTTP status, plus a ``dukenet`` object (the task id) where one exists."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from dukenet.errors import DukenetError

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "api_error",
    504: "timeout",
}


class GatewayError(DukenetError):
    """An error answered in OpenAI's shape (rendered by :func:`render`)."""

    def __init__(
        self,
        message: str,
        status_code: int = 400,
        *,
        param: str | None = None,
        code: str | None = None,
        dukenet: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status_code)
        self.param = param
        self.code = code
        self.dukenet = dukenet

    @classmethod
    def from_domain(cls, exc: DukenetError) -> GatewayError:
        """Return a domain error (401, 402, 404, ...) as a gateway error."""
        if isinstance(exc, GatewayError):
            return exc
        return cls(exc.message, exc.status_code)

    @classmethod
    def from_validation(cls, exc: ValidationError) -> GatewayError:
        """Return the first problem of a request body as a 400 naming the parameter; an unknown
        field is an unsupported parameter (``code: unsupported_parameter``)."""
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        if first["type"] == "extra_forbidden":
            return cls(
                f"Unsupported parameter: '{param}' is not supported by the DukeNET gateway.",
                param=param,
                code="unsupported_parameter",
            )
        message = f"Invalid parameter '{param}': {first['msg']}"
        return cls(message, param=param, code="invalid_value")

    def body(self) -> dict[str, Any]:
        """Return the JSON body of the error."""
        body: dict[str, Any] = {
            "error": {
                "message": self.message,
                "type": ERROR_TYPES.get(self.status_code, "api_error"),
                "param": self.param,
                "code": self.code,
            }
        }
        if self.dukenet is not None:  # inside the error object too: clients surface only it
            body["error"]["dukenet"] = self.dukenet
            body["dukenet"] = self.dukenet
        return body
