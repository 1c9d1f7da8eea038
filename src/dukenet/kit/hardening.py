"""Request hardening: input the database cannot store answers 4xx, not 500; bodies are bounded;
validation errors never echo huge or unserialisable input; responses carry security headers;
logs carry no secrets.

:func:`install` wires it all into an app:

* query and path integers beyond int64 (``offset=10000000000000000000``, ``/model/promote/<huge>``)
  answer 422 before any SQL runs;
* a JSON (or any non-multipart) body above ``max_json_body_bytes`` answers 413; a JSON body
  holding a NUL character (``\\u0000``, which PostgreSQL text cannot store) or the non-JSON
  constants ``NaN``/``Infinity`` answers 422;
* the 422 handler truncates each error's ``input`` (at most :data:`MAX_ECHO_CHARS` characters)
  and renders non-finite floats as strings, so it can always serialise its answer;
* a value the database refuses as data (PostgreSQL SQLSTATE class 22, SQLite's integer
  overflow) answers 422 (:func:`is_data_error`, :func:`data_error_response`);
* security headers (:class:`SecurityHeadersMiddleware`), CORS only for configured origins;
* :func:`configure_logging`: structlog with plain tracebacks (no local variables, which hold
  keys and passwords) and a processor masking secret-named fields.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from dukenet.config import Settings

MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)
MAX_ECHO_CHARS = 200
"""Longest ``input`` a validation error echoes back (longer strings are cut, with a note)."""

_INT = re.compile(r"^[+-]?\d+$")
# a \u0000 escape not itself escaped (an even number of backslashes before it)
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
_SECRET_KEYS = re.compile(
    r"pass(word)?|secret|token|api_?key|authorization|cookie|hash|credential", re.I
)
REDACTED = "**********"


def _error(loc: list[str | int], msg: str, type_: str, value: Any = None) -> dict[str, Any]:
    return {"type": type_, "loc": loc, "msg": msg, "input": value}


async def reject_out_of_range(request: Request) -> None:
    """Refuse integer query and path parameters outside int64 and NUL characters in them (an
    app dependency; it runs before the endpoint's own parameters are used).

    Raises:
        RequestValidationError: 422, naming each offending parameter.
    """
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    errors: list[dict[str, Any]] = []
    for source, values in (("path", request.path_params), ("query", request.query_params)):
        for name, value in values.items():
            if "\x00" in str(value):
                errors.append(
                    _error([source, name], "must not contain a NUL character", "string_nul")
                )
    if dependant is not None:
        params = [("path", p, request.path_params) for p in dependant.path_params] + [
            ("query", p, request.query_params) for p in dependant.query_params
        ]
        for source, param, values in params:
            raw = values.get(param.alias)
            if not isinstance(raw, str) or not _INT.match(raw.strip()):
                continue
            annotation = str(param.field_info.annotation)
            if "int" not in annotation:
                continue
            if not MIN_INT64 <= int(raw) <= MAX_INT64:
                errors.append(
                    _error(
                        [source, param.alias],
                        f"Input should be an integer between {MIN_INT64} and {MAX_INT64}",
                        "int64_range",
                        _truncate(raw),
                    )
                )
    if errors:
        raise RequestValidationError(errors)


def _truncate(value: Any, budget: int = MAX_ECHO_CHARS) -> Any:
    """Return ``value`` safe to echo: long strings cut to ``budget`` characters, non-finite
    floats as strings, big containers summarised."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        if len(value) <= budget:
            return value
        return value[:budget] + f"... ({len(value)} characters)"
    if isinstance(value, Mapping):
        items = list(value.items())
        shown = {str(k)[:budget]: _truncate(v, budget // 4) for k, v in items[:20]}
        if len(items) > 20:
            shown["..."] = f"({len(items)} keys)"
        return shown
    if isinstance(value, (list, tuple)):
        shown_list = [_truncate(v, budget // 4) for v in value[:20]]
        if len(value) > 20:
            shown_list.append(f"... ({len(value)} items)")
        return shown_list
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _truncate(str(value), budget)


def safe_errors(errors: Any) -> list[dict[str, Any]]:
    """Return validation errors that always serialise to JSON and never echo more than
    :data:`MAX_ECHO_CHARS` characters of an input; ``api_key`` inputs are masked."""
    result = []
    for error in errors:
        error = dict(error)
        loc: list[Any] = list(error.get("loc") or ())
        if "input" in error:
            is_secret = bool(loc) and _SECRET_KEYS.search(str(loc[-1])) is not None
            error["input"] = REDACTED if is_secret else _truncate(error["input"])
        if "ctx" in error and isinstance(error["ctx"], Mapping):
            error["ctx"] = {k: _truncate(v) for k, v in error["ctx"].items()}
        error.pop("url", None)
        result.append(error)
    return result


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer 422 with the errors of ``exc`` made safe to echo (:func:`safe_errors`)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": safe_errors(errors)}, status_code=422)


def is_data_error(exc: BaseException) -> bool:
    """Return True if the database refused a value as data: PostgreSQL SQLSTATE class 22
    (out of range, NUL in text, bad encoding) or a Python integer beyond SQLite's 64 bits."""
    if isinstance(exc, OverflowError):
        return True
    if isinstance(exc, DBAPIError):
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(code, str) and code.startswith("22")
    return False


def data_error_response() -> JSONResponse:
    """The 422 for a value the database cannot store (the SQL and its parameters never shown)."""
    return JSONResponse(
        {
            "detail": "a value cannot be stored: a number out of range (64-bit integers) or a "
            "string with a NUL character"
        },
        status_code=422,
    )


async def _overflow_error(request: Request, exc: Exception) -> JSONResponse:
    if not is_data_error(exc):
        raise exc
    return data_error_response()


class BodyGuardMiddleware:
    """Bounds request bodies and refuses JSON the database or the JSON standard rejects.

    A multipart body (file uploads: their own streamed limit) passes untouched. Any other body
    is read up to ``max_bytes`` (``Content-Length`` above it answers 413 before reading) and
    then replayed to the app; a JSON body holding an unescaped ``\\u0000`` or the constants
    ``NaN``, ``Infinity``, ``-Infinity`` answers 422.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        if content_type.startswith("multipart/"):
            await self.app(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if "json" in content_type or not content_type:
            problem = _json_problem(body)
            if problem is not None:
                response = JSONResponse({"detail": [problem]}, status_code=422)
                await response(scope, receive, send)
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body larger than {self.max_bytes} bytes"},
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _json_problem(body: bytes) -> dict[str, Any] | None:
    if _NUL_ESCAPE.search(body):
        return _error(["body"], "strings must not contain a NUL character (\\u0000)", "string_nul")
    if b"NaN" in body or b"Infinity" in body:

        def refuse(name: str) -> Any:
            raise ValueError(name)

        try:
            json.loads(body, parse_constant=refuse)
        except ValueError as exc:
            if str(exc) in ("NaN", "Infinity", "-Infinity"):
                return _error(
                    ["body"], f"{exc} is not a JSON number; send a finite number", "finite_number"
                )
    return None


class SecurityHeadersMiddleware:
    """Adds security headers to every HTTP response: a restrictive Content-Security-Policy
    (``frame-ancestors 'none'``; the API docs' inline bootstrap allowed), ``X-Frame-Options:
    DENY``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
    ``Cross-Origin-Opener-Policy: same-origin``, HSTS when the request came over TLS
    (``https``, after the trusted-proxy rewrite), and ``Cache-Control: no-store`` on the API's
    answers (``/api/``, ``/v1/``: tokens, keys, balances) that set no cache policy."""

    CSP = (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
        "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; "
        "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
    )

    def __init__(self, app: ASGIApp, *, hsts_max_age_s: int = 31_536_000) -> None:
        self.app = app
        self.hsts = f"max-age={hsts_max_age_s}; includeSubDomains".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = scope.get("scheme") == "https"
        api = str(scope.get("path", "")).startswith(("/api/", "/v1/"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [*self.HEADERS, (b"content-security-policy", self.CSP.encode())]
                if tls:
                    extra.append((b"strict-transport-security", self.hsts))
                if api:  # per-user data and tokens: never stored by a browser or a proxy
                    extra.append((b"cache-control", b"no-store"))
                headers.extend((k, v) for k, v in extra if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: mask the values of fields named like secrets (password, token,
    api_key, authorization, hash, ...)."""
    for key in list(event):
        if key != "event" and _SECRET_KEYS.search(key) and event[key] is not None:
            event[key] = REDACTED
    return event


def configure_logging(level: str = "info", fmt: str = "console") -> None:
    """Configure structlog for a DukeNET process: the least ``level`` shown (debug, info,
    warning or error), one ``key=value`` line an event (``fmt="json"``: one JSON object, for a
    log collector; colours only on a terminal), timestamps, secret fields masked and exceptions
    rendered as plain tracebacks (never with local variables, which may hold API keys,
    passwords or hashes). Idempotent."""
    levels = logging.getLevelNamesMapping()
    if level.upper() not in levels:
        raise ValueError(f"log level: {level!r} is not debug, info, warning or error")
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stdout.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(levels[level.upper()]),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="iso" if fmt == "json" else "%Y-%m-%d %H:%M:%S"),
            redact_secrets,
            *([structlog.processors.format_exc_info] if fmt == "json" else []),
            renderer,
        ],
    )


def install(app: FastAPI, settings: Settings) -> None:
    """Wire request hardening into ``app``: the int64/NUL parameter check (an app dependency),
    the safe 422 handler, the data-error and overflow handlers, the body guard, security
    headers and (only for ``cors_origins``) CORS. Call once, before the app starts."""
    configure_logging(settings.log_level, settings.log_format)
    app.router.dependencies.insert(0, Depends(reject_out_of_range))
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(OverflowError, _overflow_error)
    app.add_middleware(BodyGuardMiddleware, max_bytes=settings.max_json_body_bytes)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "Idempotency-Key"],
            allow_credentials=False,
        )
    app.add_middleware(SecurityHeadersMiddleware)
