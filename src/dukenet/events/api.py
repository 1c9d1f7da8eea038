"""The server-sent-events stream of the caller's task events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from dukenet.deps import CurrentUser
from dukenet.events.hub import TaskEventHub

router = APIRouter(prefix="/events", tags=["events"])

HEARTBEAT_S = 15.0


def get_hub(request: Request) -> TaskEventHub:
    """Return the process's task event hub (503 while the app is not started)."""
    hub: TaskEventHub | None = getattr(request.app.state, "task_events", None)
    if hub is None:
        raise HTTPException(503, "task events are not available")
    return hub


@router.get(
    "/tasks",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An event stream"}},
)
async def task_events(
    request: Request,
    user: CurrentUser,
    max_s: float | None = Query(
        default=None, gt=0, le=86_400, description="Close the stream after this many seconds."
    ),
) -> StreamingResponse:
    """Stream the caller's task changes as server-sent events (``event: task``, data
    ``{"task_id", "status", "agent_id", "updated_at"}``): a buyer's own tasks, the tasks of an
    operator's agents, every task for an admin; a comment line every 15 s keeps it open, and
    ``max_s`` (seconds) ends it (the browser reconnects)."""
    hub = get_hub(request)
    loop = asyncio.get_running_loop()
    deadline = None if max_s is None else loop.time() + max_s

    async def stream() -> AsyncIterator[str]:
        with hub.subscribe(user) as queue:
            yield "retry: 3000\n: connected\n\n"
            while not await request.is_disconnected():
                wait = HEARTBEAT_S if deadline is None else min(HEARTBEAT_S, deadline - loop.time())
                if wait <= 0:
                    return
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=wait)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: task\ndata: {json.dumps(event.public())}\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
