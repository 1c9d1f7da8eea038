"""The delta relay: a streamed answer's pieces reach a reader in order, once, from any thread."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from urllib.parse import urlparse

import pytest

from dukenet.events.stream import Delta, DeltaRelay

REDIS_URL = os.environ.get("DUKENET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_up() -> bool:
    url = urlparse(REDIS_URL)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), 0.5):
            return True
    except OSError:
        return False


class TestRelay:
    async def test_pieces_from_another_thread_reach_the_reader_in_order(self) -> None:
        relay = DeltaRelay()
        task_id = uuid.uuid4()
        pieces = [f"piece {i} " for i in range(200)]
        with relay.subscribe(task_id) as reader:

            def runner() -> None:  # a runner on its own thread (no event loop of the reader's)
                sink = relay.sink(task_id, attempt=1)
                for piece in pieces:
                    sink.send(piece)

            thread = threading.Thread(target=runner)
            thread.start()
            received: list[str] = []
            while len(received) < len(pieces):
                await asyncio.wait_for(reader.wait(), 5)
                received += [d.text for d in reader.take()]
            thread.join()
        assert received == pieces
        assert relay.buffered_tasks() == 0  # the last reader leaving drops the buffer

    async def test_what_came_before_the_subscription_is_read_first(self) -> None:
        relay = DeltaRelay()
        task_id = uuid.uuid4()
        relay.sink(task_id, 1).send("early ")
        with relay.subscribe(task_id) as reader:
            await asyncio.wait_for(reader.wait(), 1)  # already woken
            assert [d.text for d in reader.take()] == ["early "]
            assert reader.take() == []

    async def test_a_repeated_piece_is_kept_once_and_a_gap_is_refused(self) -> None:
        relay = DeltaRelay()
        task_id = uuid.uuid4()
        with relay.subscribe(task_id) as reader:
            assert relay.publish(task_id, Delta(1, 0, "Hello"))
            assert relay.publish(task_id, Delta(1, 0, "Hello"))  # a retried POST
            assert relay.publish(task_id, Delta(1, 3, "lo, wor"))  # overlaps: the new part
            assert not relay.publish(task_id, Delta(1, 20, "far ahead"))
            assert relay.publish(task_id, Delta(2, 0, "Second try"))  # attempts apart
            assert [(d.attempt, d.offset, d.text) for d in reader.take()] == [
                (1, 0, "Hello"),
                (1, 5, ", wor"),
                (2, 0, "Second try"),
            ]

    async def test_buffers_are_bounded(self) -> None:
        relay = DeltaRelay(max_chars=10, max_tasks=3, idle_s=3600)
        task_id = uuid.uuid4()
        with relay.subscribe(task_id) as reader:
            assert relay.publish(task_id, Delta(1, 0, "0123456789"))
            assert not relay.publish(task_id, Delta(1, 10, "x"))  # over max_chars
            assert relay.dropped_chars == 1
            assert "".join(d.text for d in reader.take()) == "0123456789"
            for _ in range(5):  # unread buffers beyond max_tasks: the oldest go
                relay.sink(uuid.uuid4(), 1).send("abc")
            assert relay.buffered_tasks() == 3
            assert reader.take() == []  # the read buffer stays
            relay.publish(task_id, Delta(1, 10, ""))
        assert relay.buffered_tasks() == 2

    async def test_idle_unread_buffers_expire(self) -> None:
        relay = DeltaRelay(idle_s=0.0)
        relay.sink(uuid.uuid4(), 1).send("nobody reads this")
        relay.sink(uuid.uuid4(), 1).send("nor this")  # creating a buffer prunes idle ones
        assert relay.buffered_tasks() == 1


@pytest.mark.skipif(not _redis_up(), reason="Redis")
class TestRedisFanout:
    async def test_a_piece_published_in_one_process_reaches_a_reader_in_another(self) -> None:
        here, there = DeltaRelay(), DeltaRelay()  # two API processes' relays
        stop = asyncio.Event()
        workers = [asyncio.create_task(r.run_fanout(REDIS_URL, stop)) for r in (here, there)]
        task_id = uuid.uuid4()
        try:
            with there.subscribe(task_id) as reader:
                await asyncio.sleep(0.3)  # both subscribed to the channel
                sink = here.sink(task_id, attempt=1)  # a runner reporting to the other process
                pieces = ["one ", "two ", "three"]
                for piece in pieces:
                    sink.send(piece)
                received: list[str] = []
                while len(received) < len(pieces):
                    await asyncio.wait_for(reader.wait(), 5)
                    received += [d.text for d in reader.take()]
            assert received == pieces
            with here.subscribe(task_id) as local:  # the publisher's own copy, once
                assert [d.text for d in local.take()] == pieces
        finally:
            stop.set()
            await asyncio.gather(*workers)
