"""Plain factory functions for tests: users, tokens, credits, agents, tasks."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.accounts import service as accounts_service
from dukenet.accounts.models import UserRole
from dukenet.kit.state import AppState

PASSWORD = "correct horse battery"


def auth(token: str) -> dict[str, str]:
    """Return the Authorization header for a bearer token."""
    return {"Authorization": f"Bearer {token}"}


async def register(
    client: httpx.AsyncClient, *, role: str = "buyer", email: str | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Register and log in a user through the API; return (user json, auth headers)."""
    email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    response = await client.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "role": role}
    )
    assert response.status_code == 201, response.text
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return response.json(), auth(login.json()["access_token"])


async def create_admin(state: AppState) -> tuple[uuid.UUID, dict[str, str]]:
    """Create an admin directly (as ``dukenet users create-admin`` does); return (id, headers)."""
    sessionmaker: async_sessionmaker[AsyncSession] = state.sessionmaker
    async with sessionmaker() as session:
        user = await accounts_service.register(
            session,
            state.hasher,
            email=f"admin-{uuid.uuid4().hex[:8]}@example.com",
            password=PASSWORD,
            role=UserRole.ADMIN,
        )
        await session.commit()
    return user.id, auth(state.tokens.issue(user))


async def credit(
    client: httpx.AsyncClient, admin: dict[str, str], user_id: str, amount_sat: int
) -> None:
    """Deposit satoshis into a user's wallet through the admin endpoint."""
    response = await client.post(
        f"/admin/users/{user_id}/credit", headers=admin, json={"amount_sat": amount_sat}
    )
    assert response.status_code == 200, response.text


async def replay_agent(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    *,
    model: str = "gpt-3.5-turbo-1106",
    base_price_sat: int = 1_000,
    name: str | None = None,
) -> dict[str, Any]:
    """Register a RouterBench replay agent (admin only)."""
    response = await client.post(
        "/agents",
        headers=admin,
        json={
            "name": name or f"{model}-{uuid.uuid4().hex[:6]}",
            "kind": "replay",
            "base_price_sat": base_price_sat,
            "replay": {"dataset": "routerbench", "model": model},
        },
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def llm_agent(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    *,
    base_url: str,
    model: str = "test-model",
    base_price_sat: int = 1_000,
) -> dict[str, Any]:
    """Register an OpenAI-compatible LLM agent as an operator."""
    response = await client.post(
        "/agents",
        headers=operator,
        json={
            "name": f"llm-{uuid.uuid4().hex[:8]}",
            "kind": "llm",
            "base_price_sat": base_price_sat,
            "llm": {"base_url": base_url, "model": model},
        },
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def submit_task(
    client: httpx.AsyncClient, buyer: dict[str, str], **fields: Any
) -> httpx.Response:
    """POST a task with sensible defaults; return the raw response."""
    body: dict[str, Any] = {
        "description": "Write a python function to add two numbers.",
        "complexity": 3,
    }
    body.update(fields)
    return await client.post("/tasks", headers=buyer, json=body)


async def claim_and_submit(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    task_id: str,
    text: str,
    *,
    success: bool = True,
) -> httpx.Response:
    """Claim ``task_id`` over the runner API as its agent's operator (asserting the claim got
    that task) and submit ``text`` as its result; return the result's response."""
    claim = await client.post("/runner/claim", headers=operator, json={"task_id": task_id})
    assert claim.status_code == 200 and claim.json()["task_id"] == task_id, claim.text
    return await client.post(
        f"/runner/tasks/{task_id}/result",
        headers=operator,
        json={
            "lease_token": claim.json()["lease_token"],
            "idempotency_key": f"result-{task_id}",
            "text": text,
            "success": success,
        },
    )
