"""A runner on another machine: the runner protocol over HTTP with an operator's API key.

``dukenet runner --server URL --api-key KEY`` claims work for the key owner's agents that its
executors can run (never a ``human`` agent's task, nor an ``llm`` agent's whose API key is stored
on the server: the claim names the agents and kinds it can execute), executes it with the same
executors as the in-process runner, heartbeats while it works, submits each
result once (the idempotency key makes retries safe) and releases a task after an execution
error so that it is retried or refunded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import structlog

from dukenet.agents.models import Agent, AgentKind
from dukenet.runners.base import Execution, ExecutionError, Executor, SelectiveExecutor, WorkItem

log = structlog.get_logger(__name__)

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


class RemoteRunner:
    """Pulls work from a DukeNET server over HTTP (``/api/v2/runner/...``).

    ``client`` is an ``httpx.AsyncClient`` whose ``base_url`` is the server's ``/api/v2`` and whose
    headers carry the API key; it is owned by the caller.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        executors: Mapping[AgentKind, Executor],
        *,
        name: str | None = None,
        heartbeat_s: float = 20.0,
        poll_s: float = 1.0,
        agents_ttl_s: float = 10.0,
    ) -> None:
        self._client = client
        self._executors = executors
        self._heartbeat_s = heartbeat_s
        self._poll_s = poll_s
        self._agents_ttl_s = agents_ttl_s
        self._agents: dict[uuid.UUID, Agent] = {}
        self._runnable: list[uuid.UUID] = []
        self._listed_at: float | None = None
        self.name = name or f"remote-{uuid.uuid4().hex[:8]}"

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        delay = 0.5
        for attempt in range(5):
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt == 4:
                    raise
            else:
                if response.status_code not in RETRYABLE_STATUS or attempt == 4:
                    return response
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def _agent(self, agent_id: uuid.UUID) -> Agent:
        if agent_id not in self._agents:
            response = await self._call("GET", f"/agents/{agent_id}")
            response.raise_for_status()
            self._agents[agent_id] = _agent_from(response.json())
        return self._agents[agent_id]

    async def runnable_agents(self) -> list[uuid.UUID]:
        """Return the ids of the key owner's enabled agents this runner can execute (an
        executor for the kind that ``handles`` the agent: e.g. not a ``human`` agent, nor an
        ``llm`` agent whose API key is stored on the server), listed at most every
        ``agents_ttl_s`` seconds (``GET /runner/agents``)."""
        now = time.monotonic()
        if self._listed_at is None or now - self._listed_at >= self._agents_ttl_s:
            response = await self._call("GET", "/runner/agents")
            response.raise_for_status()
            agents = [_agent_from(body) for body in response.json()]
            self._agents.update({a.id: a for a in agents})
            runnable = [a.id for a in agents if self._can_execute(a)]
            skipped = sorted(a.name for a in agents if not self._can_execute(a))
            if self._listed_at is None or set(runnable) != set(self._runnable):
                log.info(
                    "remote runner agents",
                    runnable=sorted(self._agents[i].name for i in runnable),
                    skipped=skipped,  # no executor here, or (llm) a key this runner cannot use
                )
            self._runnable, self._listed_at = runnable, now
        return self._runnable

    def _can_execute(self, agent: Agent) -> bool:
        executor = self._executors.get(agent.kind)
        if executor is None:
            return False
        return not isinstance(executor, SelectiveExecutor) or executor.handles(agent)

    async def run_once(self) -> bool:
        """Claim and finish at most one task; return True if there was one.

        Raises:
            httpx.HTTPStatusError: the server refused the key or the request (4xx other than a
                lost lease).
        """
        runnable = await self.runnable_agents()
        if not runnable:
            return False
        response = await self._call(
            "POST",
            "/runner/claim",
            json={
                "runner": self.name,
                "agent_ids": [str(i) for i in runnable],
                "kinds": sorted(k.value for k in self._executors),
            },
        )
        response.raise_for_status()
        claim = response.json()
        if claim is None:
            return False
        task_id, token = claim["task_id"], claim["lease_token"]
        agent = await self._agent(uuid.UUID(claim["agent_id"]))
        executor = self._executors.get(agent.kind)
        if executor is None or not self._can_execute(agent):
            await self._release(task_id, token, f"this runner cannot execute {agent.name}")
            return True
        heartbeat = asyncio.create_task(self._heartbeat(task_id, token))
        chat = claim.get("chat")
        deltas = StreamRelay(self._call, task_id, token) if (chat or {}).get("stream") else None
        try:
            execution: Execution = await executor.execute(
                agent,
                WorkItem(
                    claim["description"],
                    claim["complexity"],
                    claim.get("context", ""),
                    chat,
                    external_id=claim.get("external_id"),
                    deltas=deltas,
                ),
            )
        except ExecutionError as exc:
            await self._release(task_id, token, str(exc))
            return True
        except Exception as exc:
            log.exception("executor crashed", task_id=task_id)
            await self._release(task_id, token, f"{type(exc).__name__}: {exc}")
            return True
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await heartbeat
            if deltas is not None:  # every piece relayed before the result is submitted
                await deltas.close()
        submitted = await self._call(
            "POST",
            f"/runner/tasks/{task_id}/result",
            json={
                "lease_token": token,
                "idempotency_key": f"{task_id}:{claim['attempt']}",
                "text": execution.text,
                "success": execution.success,
                "confidence": execution.confidence,
                "latency_ms": execution.latency_ms,
                "cost_usd": execution.cost_usd,
                "metadata": execution.metadata,
            },
        )
        if submitted.status_code == 409:
            log.warning("lease lost before the result was submitted", task_id=task_id)
        else:
            submitted.raise_for_status()
        return True

    async def _heartbeat(self, task_id: str, token: str) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            await self._call(
                "POST", f"/runner/tasks/{task_id}/heartbeat", params={"lease_token": token}
            )

    async def _release(self, task_id: str, token: str, error: str) -> None:
        response = await self._call(
            "POST",
            f"/runner/tasks/{task_id}/release",
            params={"lease_token": token, "error": error[:2000]},
        )
        if response.status_code != 409:
            response.raise_for_status()

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; on an error log it and back off one poll interval."""
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("remote runner iteration failed", runner=self.name)
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._poll_s)


class StreamRelay:
    """Relays a streamed answer to the server while the agent streams it (``POST
    /runner/tasks/{id}/stream``, a ``DeltaSink``): one request at a time, the pieces that come
    meanwhile together in the next (so a slow link sends fewer, larger pieces), each at most
    ``max_chars``. A refused or failing request ends relaying for the task: the submitted
    result is the answer, and the gateway sends what the relay did not carry from it."""

    def __init__(
        self,
        call: Callable[..., Awaitable[httpx.Response]],
        task_id: str,
        lease_token: str,
        *,
        max_chars: int = 65_536,
    ) -> None:
        self._call = call
        self._path = f"/runner/tasks/{task_id}/stream"
        self._token = lease_token
        self._max_chars = max_chars
        self._pending: list[str] = []
        self._offset = 0  # characters the server acknowledged
        self._wake = asyncio.Event()
        self._closing = False
        self.failed = False
        self._sender = asyncio.create_task(self._send_loop())

    def send(self, text: str) -> None:
        """Queue the next piece of the answer (never blocks, never raises)."""
        if text and not self.failed:
            self._pending.append(text)
            self._wake.set()

    async def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued (waiting at most ``timeout_s`` seconds), then stop."""
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._sender), timeout_s)
        except TimeoutError:
            log.warning("streamed pieces not relayed in time", path=self._path)
            self._sender.cancel()
        except Exception:
            log.warning("relaying the streamed answer failed", path=self._path, exc_info=True)

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and not self.failed:
                text = "".join(self._pending)
                self._pending.clear()
                for start in range(0, len(text), self._max_chars):
                    if not await self._post(text[start : start + self._max_chars]):
                        self.failed = True
                        self._pending.clear()
                        break
            if self._closing:
                return

    async def _post(self, piece: str) -> bool:
        try:
            response = await self._call(
                "POST",
                self._path,
                json={"lease_token": self._token, "offset": self._offset, "text": piece},
            )
        except httpx.HTTPError as exc:
            log.warning("relaying a streamed piece failed", path=self._path, error=str(exc))
            return False
        if response.status_code >= 400 or not response.json().get("accepted"):
            log.warning(
                "a streamed piece was refused", path=self._path, status=response.status_code
            )
            return False
        self._offset += len(piece)
        return True


def _agent_from(body: dict[str, Any]) -> Agent:
    """Return an (unsaved) agent from the server's ``AgentDetail`` JSON."""
    return Agent(
        id=uuid.UUID(body["id"]),
        name=body["name"],
        kind=AgentKind(body["kind"]),
        owner_id=uuid.UUID(body["owner_id"]),
        base_price_sat=body["base_price_sat"],
        config=body["config"],
    )
