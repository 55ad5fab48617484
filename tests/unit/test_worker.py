"""The one worker loop of the controllers: a failing key is retried with growing backoff and
its count logged, a `Permanent` error is logged once and not retried, success and `forget`
clear the count, and `reconciling` names the keys under way (not those waiting to be ready)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from seqflow.controller.queue import WorkQueue
from seqflow.controller.worker import Permanent, Workers


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_a_failing_key_is_retried_with_its_count_and_a_success_clears_it(caplog):
    calls: list[str] = []

    async def reconcile(key: str) -> None:
        calls.append(key)
        if len(calls) < 3:
            raise RuntimeError("the API server is away")

    async def scenario():
        queue: WorkQueue[str] = WorkQueue()
        workers = Workers(queue=queue, reconcile=reconcile, what="run")
        workers.start(1, name="test-worker")
        queue.add("ns/r")
        while len(calls) < 3:
            await asyncio.sleep(0.05)
        await workers.stop()

    with caplog.at_level(logging.ERROR, logger="seqflow.controller.worker"):
        run(scenario())
    assert calls == ["ns/r"] * 3  # retried after 0.5 s, then 1 s: held back, not at once
    failures = [r.getMessage() for r in caplog.records]
    assert failures == [
        "reconciling run ns/r failed (1 in a row); retrying in 0.5 s",
        "reconciling run ns/r failed (2 in a row); retrying in 1.0 s",
    ]


def test_a_permanent_error_is_logged_once_and_not_retried(caplog):
    calls: list[tuple[str, str]] = []

    async def reconcile(key: tuple[str, str]) -> None:
        calls.append(key)
        raise Permanent("its spec is not one seqflow reads")

    async def scenario():
        queue: WorkQueue[tuple[str, str]] = WorkQueue()
        workers = Workers(queue=queue, reconcile=reconcile, what="schedule")
        workers.start(1, name="test-worker")
        queue.add(("ns", "nightly"))
        await asyncio.sleep(1.0)  # a retry would have come after 0.5 s
        await workers.stop()

    with caplog.at_level(logging.WARNING, logger="seqflow.controller.worker"):
        run(scenario())
    assert calls == [("ns", "nightly")]
    assert [r.getMessage() for r in caplog.records] == [
        "schedule ns/nightly cannot be reconciled: its spec is not one seqflow reads"
    ]


@pytest.mark.parametrize("ready_first", [True, False])
def test_reconciling_names_the_keys_under_way_once_ready(ready_first: bool):
    async def scenario():
        is_ready, done = asyncio.Event(), asyncio.Event()
        if ready_first:
            is_ready.set()

        async def wait_ready() -> None:
            await is_ready.wait()

        async def reconcile(key: str) -> None:
            await done.wait()

        queue: WorkQueue[str] = WorkQueue()
        workers = Workers(queue=queue, reconcile=reconcile, what="run", ready=wait_ready)
        workers.start(1, name="test-worker")
        queue.add("a")
        await asyncio.sleep(0.05)
        seen = workers.reconciling()
        is_ready.set()
        await asyncio.sleep(0.05)
        under_way = workers.reconciling()
        done.set()
        await asyncio.sleep(0.05)
        after = workers.reconciling()
        await workers.stop()
        return seen, under_way, after

    seen, under_way, after = run(scenario())
    assert seen == (frozenset({"a"}) if ready_first else frozenset())  # waiting to be ready: not yet
    assert under_way == frozenset({"a"}) and after == frozenset()


def test_forget_clears_a_gone_keys_failures(caplog):
    calls: list[str] = []

    async def reconcile(key: str) -> None:
        calls.append(key)
        raise RuntimeError("boom")

    async def scenario():
        queue: WorkQueue[str] = WorkQueue()
        workers = Workers(queue=queue, reconcile=reconcile, what="run")
        workers.start(1, name="test-worker")
        queue.add("ns/r")
        while not calls:
            await asyncio.sleep(0.01)
        workers.forget("ns/r")  # deleted: its timer and count go
        await asyncio.sleep(0.8)  # the retry, had it been kept, came after 0.5 s
        assert calls == ["ns/r"]
        queue.add("ns/r")  # created again under the same name
        while len(calls) < 2:
            await asyncio.sleep(0.01)
        await workers.stop()

    with caplog.at_level(logging.ERROR, logger="seqflow.controller.worker"):
        run(scenario())
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "reconciling run ns/r failed (1 in a row)",
        "reconciling run ns/r failed (1 in a row)",
    ]
