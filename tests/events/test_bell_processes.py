"""The bell between an API and a ``dukenet runner`` process on the same PostgreSQL database
(LISTEN/NOTIFY, no Redis): a gateway call's new task wakes the idle runner process, and the
result it submits wakes the gateway call, with both polls at 30 s; a SIGTERM stops the idle
runner at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from dukenet.config import Settings
from tests.events.test_bell import POLL_S, WOKEN_WITHIN_S, make_world, running
from tests.llm_double import DEFAULT_ANSWER, LLMDouble
from tests.test_processes import dukenet, process_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]

LISTENERS = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND query LIKE 'LISTEN%dukenet_task_bell%'"
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test settings with 30 s polls and no Redis (the bell goes over PostgreSQL)."""
    return settings.model_copy(
        update={"gateway_poll_s": POLL_S, "runner_poll_s": POLL_S, "redis_url": ""}
    )


class TestRunnerProcess:
    async def test_a_gateway_call_is_served_by_a_runner_process_without_polling(
        self, settings: Settings, database_url: str, tmp_path: Path, double: LLMDouble
    ) -> None:
        env = process_env(
            database_url,
            tmp_path / "runner-var",
            DUKENET_RUNNER_POLL_S=str(POLL_S),
            DUKENET_DISPUTE_WINDOW_S="0",
            DUKENET_ALLOWED_AGENT_NETWORKS="127.0.0.0/8",
        )
        async with running(settings) as api:
            world = await make_world(api, agent_url=double.base_url)
            with dukenet(env, "runner", "--name", "r-bell", wait_for="runner started") as runner:
                assert "bell=postgres" in runner.text()
                deadline = time.monotonic() + 60
                while True:  # this app's and the runner's LISTEN connections are up
                    async with api.state.sessionmaker() as session:
                        if (await session.scalar(LISTENERS) or 0) >= 2:
                            break
                    assert time.monotonic() < deadline, runner.text()
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # its first claim found nothing: idle for 30 s
                started = time.monotonic()
                answer = await api.client.post(
                    "/v1/chat/completions",
                    headers={"Authorization": f"Bearer {world.buyer_key}"},
                    json={
                        "model": world.agent["name"],
                        "messages": [{"role": "user", "content": "Add two numbers."}],
                    },
                )
                took_s = time.monotonic() - started
                stopping = time.monotonic()
                assert runner.stop() == 0, runner.text()
                # an idle runner waits on its bell, which the stop rings: not its 30 s poll
                assert time.monotonic() - stopping < 10, runner.text()
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == DEFAULT_ANSWER
        assert took_s < WOKEN_WITHIN_S, f"answered after {took_s:.1f} s"
