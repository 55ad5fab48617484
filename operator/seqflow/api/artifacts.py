"""Artifacts, files passed between Job steps: where they are in a step's pod and in the object
store, and what the pod's artifact containers report.

In the pod, every artifact is a file of one directory (ARTIFACTS_DIR, an emptyDir): an init
container fetches the step's inputs into it before the command starts; a sidecar keeps its
outputs in the object store when the command has ended and says what it kept in its
termination message (`KeptReport`). In the store, an attempt's files are under a key of its
namespace, run, step and attempt, so a run's files share one prefix (deleted with its history).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

ARTIFACTS_DIR = "/seqflow/artifacts"
ARTIFACTS_VOLUME = "seqflow-artifacts"
FETCH_CONTAINER = "seqflow-artifacts-in"  # an init container: the inputs, before the command
KEEP_CONTAINER = "seqflow-artifacts-out"  # a sidecar: the outputs, once the command has ended


def run_prefix(*, namespace: str, run_uid: str) -> str:
    """The key prefix of every file of one run."""
    return f"{namespace}/{run_uid}/"


@dataclass(frozen=True)
class AttemptId:
    """One attempt of one step of one run (its uid: not a later run of the same name)."""

    namespace: str
    run_uid: str
    node: str
    attempt: int

    def artifact_key(self, name: str) -> str:
        return (
            f"{run_prefix(namespace=self.namespace, run_uid=self.run_uid)}{self.node}/{self.attempt}/{name}"
        )


@dataclass(frozen=True)
class KeptFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class KeptReport:
    """What the sidecar kept (`kept`), which declared files the step did not write (`missing`),
    and why it could not keep them all (`error`)."""

    kept: tuple[KeptFile, ...] = ()
    missing: tuple[str, ...] = ()
    error: str | None = None

    def to_message(self) -> str:
        return json.dumps(
            {
                "kept": [[f.name, f.size, f.sha256] for f in self.kept],
                "missing": list(self.missing),
                "error": self.error,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_message(cls, message: str) -> KeptReport:
        """The report in a sidecar's termination message (an unreadable one is an error)."""
        try:
            data = json.loads(message)
            kept = tuple(KeptFile(name=str(n), size=int(s), sha256=str(h)) for n, s, h in data["kept"])
            return cls(kept=kept, missing=tuple(map(str, data["missing"])), error=data.get("error"))
        except (ValueError, KeyError, TypeError) as error:
            return cls(
                error=f"the {KEEP_CONTAINER} container's report is unreadable ({error}): {message[:200]!r}"
            )
