"""Keeping attempts' logs in the history store, in the background (a run never waits for its
logs): a Job or Pod step's container log read from its pod once the attempt has ended (the pod
stays until its Job's TTL or its run goes), an in-process handler's records as captured. Each
attempt's log is kept once; a log that cannot be read or stored is left, with a warning."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Protocol

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from seqflow.api.bodies import name_of
from seqflow.api.models import JsonObject
from seqflow.cluster.kube import ApiError, KubeApi, NotFound
from seqflow.controller.worker import Background
from seqflow.executors.jobs import task_container
from seqflow.executors.steplogs import LogTail
from seqflow.history.logs import AttemptLog

logger = logging.getLogger(__name__)

READS_AT_ONCE = 8  # container logs streamed at once
REMEMBERED = 10_000  # attempts whose log was taken, not taken again


class LogStore(Protocol):
    def keep(self, namespace: str, log: AttemptLog) -> None: ...


class StepLogs:
    def __init__(self, *, api: KubeApi, store: LogStore, background: Background, limit: int) -> None:
        """`limit`: the bytes kept of each log (its tail); 0 keeps none."""
        self._api = api
        self._store = store
        self._background = background
        self.limit = limit
        self._reads = asyncio.Semaphore(READS_AT_ONCE)
        self._taken: OrderedDict[tuple[str, str, int], None] = OrderedDict()

    def keep_pod_log(self, namespace: str, *, run_uid: str, node: str, attempt: int, pod: JsonObject) -> None:
        """Read the step container's log of an attempt's ended pod, and keep it."""
        if self._take((run_uid, node, attempt)):
            self._background.spawn(self._read(namespace, AttemptLog(run_uid, node, attempt, b"", 0), pod))

    def keep(self, namespace: str, log: AttemptLog) -> None:
        """Keep an in-process attempt's captured log."""
        if self._take((log.run_uid, log.task, log.attempt)):
            self._background.spawn(self._store_log(namespace, log))

    def _take(self, attempt: tuple[str, str, int]) -> bool:
        if not self.limit or attempt in self._taken:
            return False
        self._taken[attempt] = None
        if len(self._taken) > REMEMBERED:
            self._taken.popitem(last=False)
        return True

    async def _read(self, namespace: str, log: AttemptLog, pod: JsonObject) -> None:
        tail = LogTail(self.limit)
        container = task_container(pod["spec"])["name"]
        async with self._reads:
            try:
                await self._api.read_log(namespace, name_of(pod), container=container, feed=tail.feed)
            except NotFound as error:  # the pod is gone, or its node keeps no logs
                logger.info("log of %s attempt %d not kept: %s", log.task, log.attempt, error)
                return
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as error:
                logger.warning("log of %s attempt %d not kept: %s", log.task, log.attempt, error)
                return
        await self._store_log(namespace, AttemptLog(log.run_uid, log.task, log.attempt, tail.text, tail.size))

    async def _store_log(self, namespace: str, log: AttemptLog) -> None:
        try:
            await asyncio.to_thread(self._store.keep, namespace, log)
        except (SQLAlchemyError, OSError) as error:
            logger.warning("log of %s attempt %d not kept: %s", log.task, log.attempt, type(error).__name__)
