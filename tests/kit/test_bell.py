"""The in-process bell across event loops and threads: the API's loop rings, the embedded
runners' loop (another thread) wakes at once, and the other way round for watchers."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from dukenet.kit.bell import TaskBell


class TestAcrossThreads:
    async def test_new_work_wakes_a_runner_waiting_on_another_loop(self) -> None:
        bell = TaskBell()
        waited: list[float] = []
        waiting = threading.Event()

        async def runner() -> None:
            started = time.monotonic()
            waiting.set()
            await bell.wait_for_work(30)
            waited.append(time.monotonic() - started)

        thread = threading.Thread(target=lambda: asyncio.run(runner()))
        thread.start()
        await asyncio.to_thread(waiting.wait)
        await asyncio.sleep(0.2)  # the runner is inside wait_for_work
        bell.new_work()
        await asyncio.to_thread(thread.join, 10)
        assert waited and waited[0] < 5  # woken, not timed out after 30 s

    async def test_a_ring_before_the_wait_is_kept(self) -> None:
        bell = TaskBell()
        await bell.wait_for_work(0.01)  # this loop's event exists
        bell.new_work()
        started = time.monotonic()
        await bell.wait_for_work(30)
        assert time.monotonic() - started < 5

    async def test_a_change_rung_from_another_thread_wakes_the_watcher(self) -> None:
        bell = TaskBell()
        task_id = uuid.uuid4()
        with bell.watch(task_id) as changed:
            ringer = threading.Thread(target=bell.changed, args=(task_id,))
            ringer.start()
            await asyncio.wait_for(changed.wait(), 10)
            ringer.join()
        bell.changed(task_id)  # nobody watches any more: a no-op
