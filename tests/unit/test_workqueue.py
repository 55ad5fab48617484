"""The work queue: de-duplication, one worker per key, delayed re-adds."""

from __future__ import annotations

import asyncio

import pytest

from seqflow.controller.queue import WorkQueue


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_waiting_key_is_added_once():
    async def scenario():
        queue = WorkQueue()
        queue.add("a")
        queue.add("a")
        queue.add("b")
        assert len(queue) == 2
        assert [await queue.get(), await queue.get()] == ["a", "b"]

    run(scenario())


def test_key_added_while_processing_comes_back_after_done():
    async def scenario():
        queue = WorkQueue()
        queue.add("a")
        key = await queue.get()
        queue.add("a")  # an event arrives while a worker holds "a"
        assert len(queue) == 0  # not handed to a second worker
        queue.done(key)
        assert await queue.get() == "a"

    run(scenario())


def test_add_after_delays_and_earliest_timer_wins():
    async def scenario():
        loop = asyncio.get_running_loop()
        queue = WorkQueue()
        began = loop.time()
        queue.add_after("a", 0.3)
        queue.add_after("a", 0.1)
        queue.add_after("a", 0.5)  # later than the pending timer: ignored
        assert await queue.get() == "a"
        assert 0.1 <= loop.time() - began < 0.25
        queue.done("a")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queue.get(), 0.6)

    run(scenario())


def test_forget_cancels_timer():
    async def scenario():
        queue = WorkQueue()
        queue.add_after("a", 0.05)
        queue.forget("a")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queue.get(), 0.2)

    run(scenario())


def test_urgent_keys_go_first_in_their_own_order():
    async def scenario():
        queue = WorkQueue()
        for key in ("new-1", "new-2"):
            queue.add(key)
        queue.add("done-1", urgent=True)
        queue.add("done-2", urgent=True)
        assert [await queue.get() for _ in range(4)] == ["done-1", "done-2", "new-1", "new-2"]

    run(scenario())


def test_a_failed_key_is_held_until_its_retry_time():
    async def scenario():
        queue = WorkQueue()
        queue.add("a")
        key = await queue.get()
        began = asyncio.get_running_loop().time()
        queue.retry_after(key, 0.3)
        queue.done(key)
        queue.add("a")  # a watch event meanwhile does not cut the wait short
        assert len(queue) == 0
        assert await queue.get() == "a"
        assert asyncio.get_running_loop().time() - began >= 0.29

    run(scenario())
