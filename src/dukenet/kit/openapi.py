"""Error responses in the OpenAPI document: every status code an endpoint really returns is
declared, with the ``{"detail": message}`` body of the one error handler (``main.py``).

Codes an endpoint's dependencies and shape imply are added to every ``/api/`` route by
``declare_implied_errors`` (400 and 413 a body, 401 authenticated, 403 role-guarded, 404 a path
parameter, 409 a write, 503 the database); codes only its service raises (400, 402, 413, 429,
...) are declared on the route with ``responses=error_responses(...)``. A 422 is either
FastAPI's validation error or a domain error's ``{"detail": message}``; the document says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from dukenet.deps import current_user, get_session, session_user


class ErrorRead(BaseModel):
    """The body of every error response but FastAPI's 422 (``{"detail": message}``)."""

    detail: str


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not valid JSON, or the request is well-formed but not acceptable",
    401: "Missing, invalid or expired credentials",
    402: "The balance does not cover the price",
    403: "Authenticated, but not allowed to do this",
    404: "No such resource, or not visible to the caller",
    409: "The resource's state does not allow this, or a concurrent change conflicted",
    413: "The request body is too large",
    415: "Unsupported media type",
    429: "Too many requests; retry after Retry-After seconds",
    503: "The database is unavailable or busy; retry after Retry-After seconds",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Return FastAPI ``responses=`` entries for ``codes`` (each an ``ErrorRead`` body).

    Raises ``KeyError`` for a code without a description in ``ERROR_DESCRIPTIONS``.
    """
    return {code: {"model": ErrorRead, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def declare_implied_errors(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document declare on each route the errors it implies.

    Only ``/api/`` routes (the OpenAI-compatible ``/v1`` surface has its own error shape).
    400, 413: it reads a body (FastAPI answers 400 to one that is not UTF-8 JSON; a body over
    ``DUKENET_MAX_JSON_BODY_BYTES`` or the upload limit is a 413); 401: it
    authenticates the caller; 403: a role guard (``deps.require_role``) admits it; 404: its path
    has a parameter (an id that may not exist); 409: it writes (a conflicting concurrent change
    is a 409, ``main.py``); 503: it opens a database session (the database is unreachable or
    locked). Codes a route declares itself are kept as they are; a declared 422 also admits the
    ``ErrorRead`` body (a domain error with status 422).
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault(ErrorRead.__name__, ErrorRead.model_json_schema())
        # Included routers are mounted lazily (FastAPI 0.16x): their routes come in contexts.
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            path = context.path_format or ""
            if isinstance(route, APIRoute) and route.include_in_schema and path.startswith("/api/"):
                operations = document["paths"].get(path, {})
                for method in context.methods or ():
                    operation = operations.get(method.lower())
                    if operation is not None:
                        _declare(operation.setdefault("responses", {}), implied_codes(route))
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def implied_codes(route: APIRoute) -> list[int]:
    """Return the error status codes ``route``'s dependencies and shape imply (see above)."""
    calls = set(_calls(route.dependant))
    codes: list[int] = []
    if route.dependant.body_params:
        codes += [400, 413]
    if calls & {current_user, session_user}:
        codes.append(401)
    if any(getattr(call, "__qualname__", "").startswith("require_role.") for call in calls):
        codes.append(403)
    if route.dependant.path_params:
        codes.append(404)
    if (route.methods or set()) & _WRITE_METHODS:
        codes.append(409)
    if get_session in calls:
        codes.append(503)
    return codes


def _declare(responses: dict[str, Any], codes: list[int]) -> None:
    for code in codes:
        responses.setdefault(str(code), _error_response(code))
    content = responses.get("422", {}).get("content", {}).get("application/json")
    if content is not None and "$ref" in content.get("schema", {}):
        content["schema"] = {"anyOf": [content["schema"], _ERROR_REF]}


_ERROR_REF = {"$ref": f"#/components/schemas/{ErrorRead.__name__}"}


def _error_response(code: int) -> dict[str, Any]:
    return {
        "description": ERROR_DESCRIPTIONS[code],
        "content": {"application/json": {"schema": dict(_ERROR_REF)}},
    }


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)
