"""The tests' value store in memory (the ValueStore seam of seqflow.runs.values), with a switch
to make it fail as a database away does."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy.exc import OperationalError


class MemoryValueStore:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.holds: set[tuple[str, str, str]] = set()  # (namespace, run uid, digest)
        self.available = True
        self.puts = 0

    def _check(self) -> None:
        if not self.available:
            raise OperationalError("SELECT 1", {}, Exception("the database is away"))

    def put(
        self, *, namespace: str, run_uid: str, values: Mapping[str, bytes], holds: Collection[str]
    ) -> None:
        self._check()
        self.puts += 1
        self.values.update(values)
        held_here = {d for (ns, _, d) in self.holds if ns == namespace}
        for digest in {*values, *(d for d in holds if d in held_here)}:
            self.holds.add((namespace, run_uid, digest))

    def get(self, *, namespace: str, digests: Collection[str]) -> dict[str, bytes]:
        self._check()
        held_here = {d for (ns, _, d) in self.holds if ns == namespace}
        return {d: self.values[d] for d in digests if d in held_here and d in self.values}
