"""Which runs this replica serves, with active-active replicas (buckets.py shares the keys out):
a run goes by its own key, or, when its Workflow has a concurrency limit, by its Workflow's, so
that one replica admits all of that Workflow's runs, in order."""

from __future__ import annotations

from collections.abc import Callable

from seqflow.api.bodies import Key, workflow_of
from seqflow.runs.cache import Cache

Owns = Callable[[str, str], bool]  # whether this replica holds a key (namespace, name)


def owns_everything(namespace: str, name: str) -> bool:
    """One replica alone: it holds every key."""
    return True


def hands_over_nothing(namespace: str, name: str) -> bool:
    return False


class Ownership:
    def __init__(self, cache: Cache, *, owns: Owns, handing_over: Owns) -> None:
        """`owns` says which keys this replica holds, `handing_over` which of them it is giving
        up (their work under way ends, nothing new starts)."""
        self._cache = cache
        self._owns = owns
        self._handing_over = handing_over

    def _owner_key(self, key: Key) -> Key:
        body = self._cache.runs.get(key)
        workflow = workflow_of(body) if body is not None else ""
        return (key[0], workflow) if workflow and self._cache.limited(key[0], workflow) else key

    def serves(self, key: Key) -> bool:
        """Whether this replica reconciles the run."""
        return self._owns(*self._owner_key(key))

    def giving_up(self, key: Key) -> bool:
        """Whether the run is being handed to another replica."""
        return self._handing_over(*self._owner_key(key))

    def owns_workflow(self, key: Key) -> bool:
        """Whether this replica writes the Workflow's status."""
        return self._owns(*key)
