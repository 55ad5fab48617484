"""Kubernetes Events on WorkflowRuns: the story `kubectl describe workflowrun` tells.

Best effort by design: Events wait in a bounded queue and a few posters send them, so posting
never holds up a run; when the queue is full, an Event is dropped (and logged).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import datetime

from seqflow.api.bodies import name_of
from seqflow.api.models import GROUP, VERSION, JsonObject
from seqflow.clock import Clock, SystemClock
from seqflow.cluster.kube import KubeApi
from seqflow.engine import PostEvent

logger = logging.getLogger(__name__)
MAX_MESSAGE = 1024
POSTERS = 4


def event_of(run: JsonObject, action: PostEvent, *, host: str, at: datetime, sequence: int) -> JsonObject:
    """A core/v1 Event about `run` (or another seqflow object: a WorkflowSchedule), the
    `sequence`-th this process posts."""
    meta = run["metadata"]
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    unique = int(at.timestamp() * 1_000_000) * 1000 + sequence % 1000
    return {
        # Named like client-go's recorder: same-second Events list in the order they happened.
        "metadata": {"name": f"{meta['name'][:200]}.{unique:x}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": run.get("kind", "WorkflowRun"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": action.type.value,
        "reason": str(action.reason),
        "message": action.message[:MAX_MESSAGE],
        "source": {"component": "seqflow", "host": host},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, api: KubeApi, *, queue_size: int, clock: Clock | None = None) -> None:
        self._api = api
        self._clock = clock or SystemClock()
        self._sequence = 0
        self._queue: asyncio.Queue[JsonObject] = asyncio.Queue(queue_size)
        self._host = socket.gethostname()
        self._posters: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._posters = [
            asyncio.create_task(self._post(), name=f"seqflow-events-{i}") for i in range(POSTERS)
        ]

    async def stop(self) -> None:
        for poster in self._posters:
            poster.cancel()
        await asyncio.gather(*self._posters, return_exceptions=True)

    def post(self, run: JsonObject, action: PostEvent) -> None:
        try:
            self._sequence += 1
            event = event_of(run, action, host=self._host, at=self._clock.now(), sequence=self._sequence)
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            logger.warning("event queue full; dropping %s event of %s", action.reason, name_of(run))

    async def _post(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._api.create_event(event["metadata"]["namespace"], event)
            except Exception as error:  # Events are best effort: never stop the run loop
                logger.warning("could not post event %s: %s", event["reason"], error)
