"""The authorization matrix: every endpoint × every role answers the status it should.

``MATRIX`` has one row per endpoint (a route may have several rows for several situations) and
one expected status per role, in ``ROLES`` order. ``test_every_route_is_in_the_matrix`` fails
when the app has a route under ``/api/v2`` (or ``/metrics``, ``/health``) that no row covers,
so a new endpoint must get its row here. A row is one line:

    Row("POST", "/api/v2/tasks/{task_id}/cancel", (401, 200, 404, 404, 404, 404, 200), fresh_task),

The last, optional field prepares each cell: it returns the call's path parameters, body and
(for calls that would end the caller's sessions) a fresh identity of the same role, so that a
cell that changes something never changes what another cell sees. Cells without one use the
world's shared objects (``World.ids``), which only reading or idempotent cells touch.

The world, made through the API for each role's test: a buyer and another buyer (both with
credit), an operator with two ``llm`` agents and another operator with one, an admin; a task of
the buyer, with the buyer's file attached, assigned to the operator's agent, executed (its
result submitted over the runner protocol, waiting in a one-hour dispute window) and rated by
the buyer; and an API key of the
operator (the ``operator_key`` role authenticates with it instead of an access token).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from dukenet.kit.state import AppState
from tests.factories import PASSWORD, create_admin, credit, register

ROLES = (
    "anonymous",
    "buyer",
    "other_buyer",
    "operator",
    "operator_key",
    "other_operator",
    "admin",
)
"""Columns of ``Row.expect``. ``buyer`` owns the world's task and file; ``operator`` runs the
agent the task is assigned to, ``operator_key`` is the same operator calling with an API key."""

COVERED_PREFIXES = ("/api/v2/", "/metrics", "/health")
UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"  # agents here are never executed by an LLM call


@dataclass
class Call:
    """What a cell sends: path parameters (over ``World.ids``), query, JSON body, upload, and
    optionally the headers of a fresh caller of the cell's role."""

    path_params: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    upload: bytes | None = None
    headers: dict[str, str] | None = None


@dataclass
class World:
    """The objects every cell may read, and factories for the ones a cell changes."""

    client: httpx.AsyncClient
    state: AppState
    headers: dict[str, dict[str, str]]
    ids: dict[str, str]
    admin: dict[str, str]

    async def new_task(self, agent: str = "agent_id") -> str:
        """Create a task of the buyer pinned to one of the operator's agents."""
        response = await self.client.post(
            "/tasks",
            headers=self.headers["buyer"],
            json={"description": "Add two numbers.", "complexity": 1, "agent_id": self.ids[agent]},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def claimed_task(self) -> tuple[str, str]:
        """Create a task for the operator's second agent and claim it; return (id, lease)."""
        await self.new_task("spare_agent_id")
        response = await self.client.post(
            "/runner/claim",
            headers=self.headers["operator"],
            json={"agent_id": self.ids["spare_agent_id"], "runner": "matrix"},
        )
        assert response.status_code == 200 and response.json() is not None, response.text
        return str(response.json()["task_id"]), str(response.json()["lease_token"])

    async def delivered_task(self) -> str:
        """Create a task for the operator's second agent and deliver a successful result (it
        waits in escrow for the buyer's acceptance)."""
        task_id, lease = await self.claimed_task()
        response = await self.client.post(
            f"/runner/tasks/{task_id}/result",
            headers=self.headers["operator"],
            json={"lease_token": lease, "idempotency_key": task_id, "text": "3", "success": True},
        )
        assert response.status_code == 201, response.text
        return task_id

    async def new_file(self) -> str:
        """Upload a file of the buyer with content no other file has (no deduplication)."""
        response = await self.client.post(
            "/files",
            headers=self.headers["buyer"],
            files={"file": ("notes.txt", f"notes {uuid.uuid4()}\n".encode(), "text/plain")},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def new_agent(self) -> str:
        """Register another agent of the operator."""
        return await register_agent(self.client, self.headers["operator"])

    async def new_api_key(self) -> str:
        """Create another API key of the operator; return its id."""
        response = await self.client.post(
            "/api-keys", headers=self.headers["operator"], json={"name": "spare"}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def new_user(self) -> str:
        """Register another buyer; return their id."""
        user, _ = await register(self.client)
        return str(user["id"])

    async def new_session(self) -> dict[str, str]:
        """Register another buyer and log in; return the login's tokens."""
        user, _ = await register(self.client)
        login = await self.client.post(
            "/auth/login", json={"email": user["email"], "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        tokens: dict[str, str] = login.json()
        return tokens

    async def fresh_caller(self, role: str) -> dict[str, str] | None:
        """Return headers of a new user of ``role`` (same permissions, their own sessions)."""
        if role == "anonymous":
            return None
        if role == "admin":
            return (await create_admin(self.state))[1]
        if role == "operator_key":
            return await api_key_headers(
                self.client, (await register(self.client, role="agent"))[1]
            )
        _, headers = await register(self.client, role="agent" if "operator" in role else "buyer")
        return headers


Prepare = Callable[[World, str], Awaitable[Call]]


async def shared(world: World, role: str) -> Call:
    """Use the world's shared objects."""
    return Call()


async def fresh_task(world: World, role: str) -> Call:
    return Call({"task_id": await world.new_task()})


async def delivered(world: World, role: str) -> Call:
    return Call({"task_id": await world.delivered_task()})


async def fresh_file(world: World, role: str) -> Call:
    return Call({"file_id": await world.new_file()})


async def fresh_agent(world: World, role: str) -> Call:
    return Call({"agent_id": await world.new_agent()})


async def fresh_key(world: World, role: str) -> Call:
    return Call({"key_id": await world.new_api_key()})


async def fresh_user(world: World, role: str) -> Call:
    return Call({"user_id": await world.new_user()})


async def fresh_caller(world: World, role: str) -> Call:
    return Call(headers=await world.fresh_caller(role))


async def file_via_task(world: World, role: str) -> Call:
    return Call(params={"task_id": world.ids["task_id"]})


async def heartbeat(world: World, role: str) -> Call:
    task_id, lease = await world.claimed_task()
    return Call({"task_id": task_id}, params={"lease_token": lease})


async def stream_piece(world: World, role: str) -> Call:
    task_id, lease = await world.claimed_task()
    return Call({"task_id": task_id}, json={"lease_token": lease, "offset": 0, "text": "3"})


async def release(world: World, role: str) -> Call:
    task_id, lease = await world.claimed_task()
    return Call({"task_id": task_id}, params={"lease_token": lease, "error": "matrix"})


async def submit_result(world: World, role: str) -> Call:
    task_id, lease = await world.claimed_task()
    body = {"lease_token": lease, "idempotency_key": f"{task_id}:1", "text": "3", "success": True}
    return Call({"task_id": task_id}, json=body)


async def claim(world: World, role: str) -> Call:
    await world.new_task("spare_agent_id")
    return Call(json={"agent_id": world.ids["spare_agent_id"], "runner": "matrix"})


def body(payload: Any | Callable[[], Any], then: Prepare = shared) -> Prepare:
    """Send ``payload`` (or what it returns, made anew per cell) as the JSON body."""

    async def prepare(world: World, role: str) -> Call:
        call = await then(world, role)
        call.json = payload() if callable(payload) else payload
        return call

    return prepare


def from_world(make: Callable[[World], Any], then: Prepare = shared) -> Prepare:
    """Send the JSON body ``make(world)`` returns."""

    async def prepare(world: World, role: str) -> Call:
        call = await then(world, role)
        call.json = make(world)
        return call

    return prepare


def unknown(param: str) -> Prepare:
    """A path parameter naming an object that does not exist: the authorization layers answer
    first (401, 403), then 404 to everyone allowed to ask."""

    async def prepare(world: World, role: str) -> Call:
        return Call(path_params={param: str(uuid.uuid4())})

    return prepare


async def dataset_kind(world: World, role: str) -> Call:
    return Call({"kind": "router"}, params={"format": "manifest"})


def query_from_world(make: Callable[[World], dict[str, str]]) -> Prepare:
    """Send the query parameters ``make(world)`` returns."""

    async def prepare(world: World, role: str) -> Call:
        return Call(params=make(world))

    return prepare


async def upload(world: World, role: str) -> Call:
    return Call(upload=f"upload {uuid.uuid4()}\n".encode())


async def refresh_token(world: World, role: str) -> Call:
    return Call(json={"refresh_token": (await world.new_session())["refresh_token"]})


async def login(world: World, role: str) -> Call:
    return Call(json={"email": world.ids["buyer_email"], "password": PASSWORD})


async def password(world: World, role: str) -> Call:
    payload = {"current_password": PASSWORD, "new_password": "another horse battery"}
    return Call(headers=await world.fresh_caller(role), json=payload)


def new_agent_body() -> dict[str, Any]:
    return {
        "name": f"matrix-{uuid.uuid4().hex[:8]}",
        "kind": "llm",
        "llm": {"base_url": UNUSED_ENDPOINT, "model": "m"},
    }


def new_registration() -> dict[str, Any]:
    return {"email": f"new-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}


TASK = {"description": "Add two numbers.", "complexity": 1}

Expect = tuple[int, int, int, int, int, int, int]


@dataclass(frozen=True)
class Row:
    """One endpoint in one situation: its route, the status per role (``ROLES`` order), and
    how each cell is prepared."""

    method: str
    path: str
    expect: Expect
    prepare: Prepare = shared
    note: str = ""


ADMIN = (401, 403, 403, 403, 401, 403, 200)
"""Admin endpoints: access tokens of admins only (an API key is no credential here: 401)."""
ANYONE_SIGNED_IN = (401, 200, 200, 200, 200, 200, 200)
SESSION_ONLY = (401, 200, 200, 200, 401, 200, 200)
"""Account management takes an access token only: an API key is 401."""
BUYERS_THING = (401, 200, 404, 404, 404, 404, 200)
"""The buyer's own object: others get 404 (existence not revealed), admins see it."""
OPERATORS_AGENT = (401, 403, 403, 200, 200, 403, 200)
"""Changing the operator's agent: its operator (token or key) and admins."""
OWN_AGENT_ONLY = (401, 403, 403, 200, 200, 403, 403)
"""Spending the operator's own resources through its agent: its operator (token or key) only."""
UNKNOWN = (401, 404, 404, 404, 404, 404, 404)
"""An id that does not exist, to anyone signed in (an API key included)."""
UNKNOWN_SESSION = (401, 404, 404, 404, 401, 404, 404)
"""An id that does not exist, on an endpoint that takes an access token only."""
ADMIN_UNKNOWN = (401, 403, 403, 403, 401, 403, 404)
"""An admin endpoint on an id that does not exist."""
OPERATOR_SESSION = (401, 403, 403, 200, 401, 200, 200)
"""An operator's own money: operators' (and admins') access tokens."""
RUNNER = (401, 403, 403, 200, 200, 404, 200)
"""The runner protocol on a task leased by the operator's agent: to another operator's runner the
task does not exist (404, as an unknown id), buyers are not runners (403)."""

# fmt: off
MATRIX: tuple[Row, ...] = (
    # accounts
    Row("POST", "/api/v2/auth/register", (201,) * 7, body(new_registration)),
    Row("POST", "/api/v2/auth/login", (200,) * 7, login),
    Row("POST", "/api/v2/auth/refresh", (200,) * 7, refresh_token),
    Row("POST", "/api/v2/auth/logout", (204,) * 7, refresh_token),
    Row("POST", "/api/v2/auth/logout-all", (401, 204, 204, 204, 401, 204, 204), fresh_caller),
    Row("GET", "/api/v2/users/me", ANYONE_SIGNED_IN),
    Row("PATCH", "/api/v2/users/me", ANYONE_SIGNED_IN, body({"display_name": "Matrix"})),
    Row("GET", "/api/v2/ledger/series", ANYONE_SIGNED_IN),
    Row("GET", "/api/v2/ledger/series", (401, 404, 404, 200, 200, 404, 200),
        query_from_world(lambda w: {"agent_id": w.ids["agent_id"]}),
        "one agent's earnings: its operator and admins; to others the agent does not exist"),
    Row("POST", "/api/v2/users/me/password", SESSION_ONLY, password),
    Row("POST", "/api/v2/api-keys", (401, 403, 403, 201, 401, 201, 201), body({"name": "k"})),
    Row("GET", "/api/v2/api-keys", SESSION_ONLY),
    Row("DELETE", "/api/v2/api-keys/{key_id}", (401, 404, 404, 204, 401, 404, 404), fresh_key,
        "only the key's owner revokes it; admins deactivate the user instead"),
    Row("GET", "/api/v2/admin/users", ADMIN),
    Row("POST", "/api/v2/admin/users/{user_id}/deactivate", ADMIN, fresh_user),
    Row("POST", "/api/v2/admin/users/{user_id}/reactivate", ADMIN, fresh_user),
    Row("POST", "/api/v2/admin/users/{user_id}/reset-password", ADMIN, fresh_user),
    Row("POST", "/api/v2/admin/users/{user_id}/credit", ADMIN, body({"amount_sat": 1})),
    # agents
    Row("POST", "/api/v2/agents", (401, 403, 403, 201, 201, 201, 201), body(new_agent_body)),
    Row("GET", "/api/v2/agents", ANYONE_SIGNED_IN),
    Row("GET", "/api/v2/agents/leaderboard", ANYONE_SIGNED_IN),
    Row("GET", "/api/v2/agents/{agent_id}/stats", ANYONE_SIGNED_IN),
    Row("GET", "/api/v2/agents/{agent_id}/series", (401, 404, 404, 200, 200, 404, 200), shared,
        "an agent's record over time: its operator and admins; to others it does not exist"),
    Row("GET", "/api/v2/agents/{agent_id}", ANYONE_SIGNED_IN),
    Row("PATCH", "/api/v2/agents/{agent_id}", OPERATORS_AGENT, body({"description": "matrix"})),
    Row("POST", "/api/v2/agents/{agent_id}/enable", OPERATORS_AGENT, fresh_agent),
    Row("POST", "/api/v2/agents/{agent_id}/disable", OPERATORS_AGENT, fresh_agent),
    Row("POST", "/api/v2/agents/{agent_id}/test-call", OWN_AGENT_ONLY, body({}),
        "its operator only (the call spends the operator's tokens); 200 with ok=false here"),
    # files
    Row("POST", "/api/v2/files", (401, 201, 201, 201, 201, 201, 201), upload),
    Row("GET", "/api/v2/files", ANYONE_SIGNED_IN),
    Row("GET", "/api/v2/files/{file_id}", BUYERS_THING),
    Row("GET", "/api/v2/files/{file_id}", (401, 200, 404, 200, 200, 404, 200), file_via_task,
        "?task_id= of a task assigned to the operator's agent that lists the file"),
    Row("GET", "/api/v2/files/{file_id}/content", BUYERS_THING),
    Row("GET", "/api/v2/files/{file_id}/content", (401, 200, 404, 200, 200, 404, 200),
        file_via_task),
    Row("DELETE", "/api/v2/files/{file_id}", (401, 204, 404, 404, 404, 404, 204), fresh_file),
    # tasks and feedback
    Row("POST", "/api/v2/tasks", (401, 201, 201, 403, 403, 403, 201),
        from_world(lambda w: {**TASK, "agent_id": w.ids["agent_id"]}), "buyers and admins buy"),
    Row("POST", "/api/v2/tasks/quote", ANYONE_SIGNED_IN, body(TASK)),
    Row("POST", "/api/v2/tasks/{task_id}/cancel", BUYERS_THING, fresh_task),
    Row("GET", "/api/v2/tasks", ANYONE_SIGNED_IN),
    Row("GET", "/api/v2/tasks/{task_id}", BUYERS_THING),
    Row("PUT", "/api/v2/tasks/{task_id}/feedback", (401, 200, 404, 404, 404, 404, 403),
        body({"rating": 4}), "only the buyer rates: an admin sees it but may not speak for them"),
    Row("GET", "/api/v2/tasks/{task_id}/feedback", BUYERS_THING),
    Row("GET", "/api/v2/tasks/{task_id}/labels", BUYERS_THING),
    Row("GET", "/api/v2/admin/judges/agreement", ADMIN),
    Row("GET", "/api/v2/admin/curation/queue", ADMIN),
    Row("GET", "/api/v2/admin/datasets/{kind}", ADMIN, dataset_kind),
    Row("GET", "/api/v2/admin/curation/tasks/{task_id}/decisions", ADMIN),
    Row("POST", "/api/v2/admin/curation/tasks/{task_id}/decisions",
        (401, 403, 403, 403, 401, 403, 409), body({"action": "discard", "version": "stale"}),
        "admins only; a stale version is a conflict"),
    Row("POST", "/api/v2/tasks/{task_id}/accept", BUYERS_THING, delivered),
    Row("POST", "/api/v2/tasks/{task_id}/reject", BUYERS_THING, body({"reason": "no"}, delivered)),
    # pairwise comparisons
    Row("POST", "/api/v2/tasks/{task_id}/compare", (401, 201, 404, 404, 404, 404, 404),
        body({}, fresh_task), "the buyer's own task only: an admin compares no one else's"),
    Row("GET", "/api/v2/comparisons", ANYONE_SIGNED_IN),
    Row("GET", "/api/v2/comparisons/{comparison_id}", UNKNOWN, unknown("comparison_id")),
    Row("POST", "/api/v2/comparisons/{comparison_id}/pick", UNKNOWN,
        body(lambda: {"winner_task_id": str(uuid.uuid4())}, unknown("comparison_id"))),
    # runner protocol
    Row("GET", "/api/v2/runner/inbox", (401, 403, 403, 200, 200, 200, 200)),
    Row("POST", "/api/v2/runner/claim", (401, 403, 403, 200, 200, 403, 200), claim,
        "another operator naming an agent not theirs is 403"),
    Row("POST", "/api/v2/runner/tasks/{task_id}/heartbeat", RUNNER, heartbeat),
    Row("POST", "/api/v2/runner/tasks/{task_id}/result", (401, 403, 403, 201, 201, 404, 201),
        submit_result),
    Row("POST", "/api/v2/runner/tasks/{task_id}/release", RUNNER, release),
    Row("POST", "/api/v2/runner/tasks/{task_id}/stream", RUNNER, stream_piece),
    # ledger, model registry, monitoring
    Row("GET", "/api/v2/admin/ledger/check", ADMIN),
    Row("GET", "/api/v2/model/versions", ADMIN),
    Row("GET", "/api/v2/model/status", ADMIN),
    Row("GET", "/api/v2/model/metrics", ADMIN),
    Row("GET", "/api/v2/model/shadow", ADMIN),
    Row("GET", "/api/v2/model/runs", ADMIN),
    Row("GET", "/api/v2/model/alias-events", ADMIN),
    # operator's view, live events
    Row("GET", "/api/v2/operator/agents", (401, 403, 403, 200, 200, 200, 200)),
    Row("GET", "/api/v2/operator/tasks", (401, 403, 403, 200, 200, 200, 200)),
    Row("GET", "/api/v2/operator/tasks", (401, 403, 403, 200, 200, 404, 200),
        query_from_world(lambda w: {"agent_id": w.ids["agent_id"]}), "one agent's"),
    Row("GET", "/api/v2/events/tasks", ANYONE_SIGNED_IN,
        query_from_world(lambda w: {"max_s": "0.05"}), "a stream; max_s ends it"),
    # in this order: the admin's cell trains version 1 on the world's outcomes, shadows it,
    # stops shadowing, promotes it; with no earlier champion a rollback is a conflict
    Row("POST", "/api/v2/model/train", (401, 403, 403, 403, 401, 403, 201)),
    Row("POST", "/api/v2/model/challenger/{version}", ADMIN),
    Row("DELETE", "/api/v2/model/challenger", (401, 403, 403, 403, 401, 403, 204)),
    Row("POST", "/api/v2/model/promote/{version}", ADMIN),
    Row("POST", "/api/v2/model/rollback", (401, 403, 403, 403, 401, 403, 409)),
    Row("GET", "/api/v2/admin/metrics", ADMIN),
    Row("GET", "/api/v2/admin/export/{kind}", ADMIN),
    Row("GET", "/metrics", (200,) * 7, shared, "public, like /health would be"),
    Row("GET", "/health", (200,) * 7, shared, "liveness: public"),
    Row("GET", "/api/v2/runner/agents", (401, 403, 403, 200, 200, 200, 200)),
    # gateway: buyer API keys, usage, webhooks (ids unknown: 404 to whoever may ask)
    Row("POST", "/api/v2/buyer-keys", (401, 201, 201, 403, 401, 403, 201), body({"name": "k"})),
    Row("GET", "/api/v2/buyer-keys", ANYONE_SIGNED_IN),
    Row("GET", "/api/v2/buyer-keys/{key_id}", UNKNOWN, unknown("key_id")),
    Row("PATCH", "/api/v2/buyer-keys/{key_id}", UNKNOWN_SESSION,
        body({"daily_limit_sat": 10}, unknown("key_id"))),
    Row("DELETE", "/api/v2/buyer-keys/{key_id}", UNKNOWN_SESSION, unknown("key_id")),
    Row("GET", "/api/v2/usage", ANYONE_SIGNED_IN),
    Row("POST", "/api/v2/webhooks", (401, 201, 201, 201, 401, 201, 201),
        body({"url": "http://127.0.0.1:9/hook", "events": ["task.completed"]}),
        "the tests allow loopback targets"),
    Row("GET", "/api/v2/webhooks", SESSION_ONLY),
    Row("GET", "/api/v2/webhooks/{endpoint_id}/deliveries", UNKNOWN_SESSION,
        unknown("endpoint_id")),
    Row("DELETE", "/api/v2/webhooks/{endpoint_id}", UNKNOWN_SESSION, unknown("endpoint_id")),
    # payments: payouts and deposits
    Row("GET", "/api/v2/payouts/balances", OPERATOR_SESSION),
    Row("GET", "/api/v2/payouts", OPERATOR_SESSION),
    Row("GET", "/api/v2/payouts/{payout_id}", (401, 403, 403, 404, 401, 404, 404),
        unknown("payout_id")),
    Row("POST", "/api/v2/payouts", (401, 403, 403, 409, 401, 404, 404),
        from_world(lambda w: {"agent_id": w.ids["agent_id"], "amount_sat": 1,
                              "destination": "wallet"}),
        "the world's agent has earned nothing yet: 409; another's agent: 404"),
    Row("GET", "/api/v2/admin/payouts", ADMIN),
    Row("POST", "/api/v2/admin/payouts/{payout_id}/approve", ADMIN_UNKNOWN,
        unknown("payout_id")),
    Row("POST", "/api/v2/admin/payouts/{payout_id}/reject", ADMIN_UNKNOWN,
        body({"reason": "no"}, unknown("payout_id"))),
    Row("GET", "/api/v2/deposits", SESSION_ONLY),
    Row("GET", "/api/v2/deposits/{deposit_id}", UNKNOWN_SESSION, unknown("deposit_id")),
    Row("POST", "/api/v2/deposits", (401, 409, 409, 409, 401, 409, 409), body({"amount_sat": 1000}),
        "the default ledger-only provider takes no deposits"),
)
# fmt: on


async def register_agent(client: httpx.AsyncClient, operator: dict[str, str]) -> str:
    """Register an ``llm`` agent for ``operator``; return its id."""
    response = await client.post("/agents", headers=operator, json=new_agent_body())
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def api_key_headers(client: httpx.AsyncClient, operator: dict[str, str]) -> dict[str, str]:
    """Create an API key for ``operator``; return headers authenticating with it."""
    response = await client.post("/api-keys", headers=operator, json={"name": "runner"})
    assert response.status_code == 201, response.text
    return {"X-API-Key": response.json()["key"]}


async def build_world(client: httpx.AsyncClient, state: AppState) -> World:
    """Make the world through the API (see the module docstring)."""
    state.settings.dispute_window_s = 3600.0  # delivered results wait for the buyer
    admin_id, admin = await create_admin(state)
    buyer, buyer_headers = await register(client)
    other_buyer, other_buyer_headers = await register(client)
    operator, operator_headers = await register(client, role="agent")
    _, other_operator_headers = await register(client, role="agent")
    for user_id in (buyer["id"], other_buyer["id"], admin_id):
        await credit(client, admin, str(user_id), 10**9)
    headers = {
        "anonymous": {},
        "buyer": buyer_headers,
        "other_buyer": other_buyer_headers,
        "operator": operator_headers,
        "operator_key": await api_key_headers(client, operator_headers),
        "other_operator": other_operator_headers,
        "admin": admin,
    }
    ids = {
        "agent_id": await register_agent(client, operator_headers),
        "spare_agent_id": await register_agent(client, operator_headers),
        "other_agent_id": await register_agent(client, other_operator_headers),
        "user_id": str(buyer["id"]),
        "buyer_email": str(buyer["email"]),
        "operator_id": str(operator["id"]),
        "admin_id": str(admin_id),
        "key_id": str((await client.get("/api-keys", headers=operator_headers)).json()[0]["id"]),
        "version": "1",
        "kind": "tasks",
    }
    world = World(client, state, headers, ids, admin)
    ids["file_id"] = await world.new_file()
    created = await client.post(
        "/tasks",
        headers=buyer_headers,
        json={**TASK, "agent_id": ids["agent_id"], "file_ids": [ids["file_id"]]},
    )
    assert created.status_code == 201, created.text
    ids["task_id"] = str(created.json()["id"])
    claimed = await client.post(
        "/runner/claim", headers=operator_headers, json={"agent_id": ids["agent_id"]}
    )
    assert claimed.status_code == 200 and claimed.json()["task_id"] == ids["task_id"]
    result = await client.post(
        f"/runner/tasks/{ids['task_id']}/result",
        headers=operator_headers,
        json={
            "lease_token": claimed.json()["lease_token"],
            "idempotency_key": "world",
            "text": "3",
            "success": True,
        },
    )
    assert result.status_code == 201, result.text
    rated = await client.put(
        f"/tasks/{ids['task_id']}/feedback", headers=buyer_headers, json={"rating": 5}
    )
    assert rated.status_code == 200, rated.text
    return world


async def send(world: World, row: Row, role: str) -> httpx.Response:
    """Prepare and send one cell."""
    call = await row.prepare(world, role)
    path = row.path.format_map({**world.ids, **call.path_params})
    url = path.removeprefix("/api/v2") if path.startswith("/api/v2") else f"http://test{path}"
    headers = call.headers if call.headers is not None else world.headers[role]
    if call.upload is not None:
        files = {"file": ("upload.txt", call.upload, "text/plain")}
        return await world.client.request(
            row.method, url, headers=headers, params=call.params, files=files
        )
    return await world.client.request(
        row.method, url, headers=headers, params=call.params, json=call.json
    )


def covered_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Return (method, path) of every route the matrix must cover."""
    routes = set()
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        if not path.startswith(COVERED_PREFIXES):
            continue
        methods = getattr(route, "methods", None) or getattr(route.original_route, "methods", ())
        routes |= {(m, path) for m in methods if m != "HEAD"}
    return routes


def test_every_route_is_in_the_matrix() -> None:
    from dukenet.main import create_app

    rows = {(row.method, row.path) for row in MATRIX}
    routes = covered_routes(create_app())
    missing = sorted(routes - rows)
    assert not missing, "add these routes to MATRIX in tests/test_authz_matrix.py: " + ", ".join(
        f"{m} {p}" for m, p in missing
    )
    stale = sorted(rows - routes)
    assert not stale, "MATRIX rows for routes that no longer exist: " + ", ".join(
        f"{m} {p}" for m, p in stale
    )
    assert all(len(row.expect) == len(ROLES) for row in MATRIX)


@pytest.mark.parametrize("role", ROLES)
async def test_each_endpoint_answers_the_role_as_the_matrix_says(
    client: httpx.AsyncClient, state: AppState, role: str
) -> None:
    world = await build_world(client, state)
    column = ROLES.index(role)
    wrong = []
    for row in MATRIX:
        response = await send(world, row, role)
        if response.status_code != row.expect[column]:
            wrong.append(
                f"{row.method} {row.path} {row.note}: expected {row.expect[column]}, "
                f"got {response.status_code} {response.text[:160]}"
            )
    assert not wrong, f"{role}:\n" + "\n".join(wrong)
