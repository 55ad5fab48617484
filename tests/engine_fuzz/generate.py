"""Random Workflows and runs of them, as a user writes them: the fuzz's cases.

`make_case(seed)` writes a Workflow (handler, Job, sleep, wait, parallel and sub-workflow steps;
compensations; retry policies; `when` expressions over random inputs that read fields that are
there or not, of any type, steps before, after or not in the Workflow, and give booleans or
not), a run of it (input, labels, depth, time to live) and how the world answers it (`Odds`).
Everything follows from the seed; the manifests are valid for the CRDs.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from seqflow.engine import EngineOptions

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
WORKFLOW = "wf"  # the name of the run's Workflow
HANDLERS = frozenset({"h1", "h2", "h3"})
STEP_NAMES = ["A", "B", "Check", "Pay", "ship-it", "v1.2", "step_3", "Z9", "Notify", "x"]
MEMBER_NAMES = ["m1", "m-2", "Email", "sms.v2", "p_4"]
SIGNALS = ["go", "approved", "ok-2", "v1.sig"]
KEYS = ["n", "s", "l", "o", "flag", "z", "tier", "a-b"]


# ----- random values and objects -----


def value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value: every JSON type, numbers at the edges of int64, nested a little."""
    roll = rng.random()
    if roll < 0.3:
        return rng.choice([0, 1, -1, 2, 7, 11, 100, 2**62, 2**63 - 1, -(2**63), rng.randint(-50, 50)])
    if roll < 0.4:
        return rng.choice([0.0, 1.5, -2.25, 1e300, 0.1])
    if roll < 0.6:
        return rng.choice(["", "a", "gold", "10", "ü", "[", "steps", "2026-11-21T10:00:00Z"])
    if roll < 0.7:
        return rng.random() < 0.5
    if roll < 0.75:
        return None
    if depth >= 2:
        return rng.randint(0, 3)
    if roll < 0.88:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KEYS): value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def json_object(rng: random.Random, *, most: int = 4) -> dict[str, Any]:
    """A random JSON object over a few keys that `when` expressions read."""
    return {rng.choice(KEYS): value(rng) for _ in range(rng.randint(0, most))}


# ----- random `when` expressions -----


def step_ref(rng: random.Random, names: list[str], index: int) -> str:
    """`steps.X` (or `steps["x-y"]`) of an earlier step mostly; else one chosen by the data at
    run time, or (the Workflow is then invalid) a later step, the step itself, one not there."""
    if index > 0 and rng.random() < 0.85:
        name = rng.choice(names[:index])
    else:
        roll = rng.random()
        if roll < 0.6:
            return f"steps[input.{rng.choice(['s', 'tier'])}]"
        later = names[index + 1 :]
        name = rng.choice(later) if roll < 0.75 and later else names[index] if roll < 0.85 else "Nope"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and rng.random() < 0.8:
        return f"steps.{name}"
    return f'steps["{name}"]'


def operand(rng: random.Random, names: list[str], index: int) -> str:
    """Something a condition reads: an input field (there or not), a step's phase or output,
    the run's labels or name."""
    roll = rng.random()
    if roll < 0.55:
        key = rng.choice(KEYS)
        return f'input["{key}"]' if "-" in key else f"input.{key}"
    if roll < 0.7:
        return f"{step_ref(rng, names, index)}.phase"
    if roll < 0.85:
        return f"{step_ref(rng, names, index)}.output.{rng.choice(['n', 's', 'flag'])}"
    return rng.choice(["run.labels.tier", "run.name", 'run.labels["team"]', "run.namespace"])


def has_step(ref: str) -> str:
    """Whether a step has a node: `has(steps.X)`, or `"x-y" in steps` (has() takes no index)."""
    if ref.startswith("steps."):
        return f"has({ref})"
    return f"{ref.removeprefix('steps[').removesuffix(']')} in steps"


def literal(rng: random.Random) -> str:
    return rng.choice(
        ["0", "1", "10", "-1", "1.5", "'gold'", "'Succeeded'", "'Skipped'", "true", "false", "null", "[1, 2]"]
    )


def atom(rng: random.Random, names: list[str], index: int) -> str:
    """A condition of one test: a comparison, has(), a string or list function, arithmetic that
    may divide by zero or overflow, an index that may be out of range."""
    target = operand(rng, names, index)
    forms = [
        lambda: f"{target} {rng.choice(['==', '!=', '<', '<=', '>', '>='])} {literal(rng)}",
        lambda: f"{target} {rng.choice(['==', '!='])} {literal(rng)}",
        lambda: f"has({target})" if "[" not in target else f"has(input.{rng.choice(KEYS[:6])})",
        lambda: has_step(step_ref(rng, names, index)),
        lambda: f"size({target}) > {rng.randint(0, 2)}",
        lambda: f"{target}.startsWith('g')",
        lambda: f"{target}.exists(x, x == 1)",
        lambda: f"{target} in [1, 'gold', true]",
        lambda: f"{target} * 4 > 0",
        lambda: f"1 / {target} > 0",
        lambda: f"{target}[{rng.randint(0, 2)}] == 1",
        lambda: f"int({target}) > 0",
        lambda: f"type({target}) == {rng.choice(['int', 'string', 'bool', 'list', 'map'])}",
        lambda: rng.choice(["true", "false"]),
    ]
    return rng.choice(forms)()


def condition(rng: random.Random, names: list[str], index: int, depth: int = 0) -> str:
    """A boolean-looking expression of atoms with &&, ||, ! and ?:."""
    roll = rng.random()
    if depth >= 2 or roll < 0.45:
        return atom(rng, names, index)
    if roll < 0.65:
        return f"{condition(rng, names, index, depth + 1)} && {condition(rng, names, index, depth + 1)}"
    if roll < 0.85:
        return f"({condition(rng, names, index, depth + 1)} || {condition(rng, names, index, depth + 1)})"
    if roll < 0.93:
        return f"!({condition(rng, names, index, depth + 1)})"
    return (
        f"({atom(rng, names, index)} ? {condition(rng, names, index, depth + 1)} : "
        f"{condition(rng, names, index, depth + 1)})"
    )


def when(rng: random.Random, names: list[str], index: int) -> str:
    """A `when` for the step at `index`: mostly a condition, sometimes an expression that gives
    no boolean, sometimes one that does not compile."""
    roll = rng.random()
    if roll < 0.08:
        return rng.choice(["input.n + 1", "'yes'", "input.o", "[true]", "null", "1", "input.s"])
    if roll < 0.11:
        return rng.choice(["input.n >", "steps.", "(true", "input..n == 1", "&& true"])
    return condition(rng, names, index)


# ----- random Workflows -----


def retry(rng: random.Random) -> dict[str, Any] | None:
    """A retry override with a random subset of its fields."""
    if rng.random() < 0.35:
        return None
    policy: dict[str, Any] = {}
    if rng.random() < 0.8:
        policy["maxRetries"] = (
            rng.choice([0, 0, 1, 1, 2, 3, 4]) if rng.random() < 0.95 else rng.randint(5, 12)
        )
    if rng.random() < 0.5:
        policy["backoffSeconds"] = rng.choice([0.5, 1, 2, 5, 30])
    if rng.random() < 0.4:
        policy["backoffFactor"] = rng.choice([1, 1.5, 2, 3])
    if rng.random() < 0.3:
        policy["maxBackoffSeconds"] = rng.choice([1, 10, 300])
    return policy


def job(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.8:
        return {"image": rng.choice(["registry.example/task:1", "busybox"]), "args": ["run"]}
    return {"podTemplate": {"spec": {"containers": [{"name": "task", "image": "busybox"}]}}}


def executor(rng: random.Random) -> dict[str, Any]:
    """A handler or a Job: what a member or a compensation runs."""
    if rng.random() < 0.6:
        return {"handler": rng.choice(sorted(HANDLERS))}
    return {"job": job(rng)}


def members(rng: random.Random) -> list[dict[str, Any]]:
    names = rng.sample(MEMBER_NAMES, rng.randint(1, 4))
    out = []
    for name in names:
        member: dict[str, Any] = {"name": name, **executor(rng)}
        if (policy := retry(rng)) is not None:
            member["retry"] = policy
        out.append(member)
    return out


def sleep(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.7:
        return {"seconds": rng.choice([0, 1, 5, 60, 3600])}
    until = T0 + timedelta(seconds=rng.choice([-3600, 0, 30, 600, 86400]))
    return {"until": until.isoformat().replace("+00:00", "Z")}


def wait(rng: random.Random) -> dict[str, Any]:
    spec: dict[str, Any] = {"signal": rng.choice(SIGNALS)}
    if rng.random() < 0.6:
        spec["timeoutSeconds"] = rng.choice([1, 10, 100, 3600])
        if rng.random() < 0.5:
            spec["onTimeout"] = rng.choice(["fail", "continue"])
    return spec


KINDS = ("handler", "job", "sleep", "wait", "parallel", "workflow")


def task(rng: random.Random, names: list[str], index: int, kind: str) -> dict[str, Any]:
    """One task of `kind`, with maybe a `when`, a compensation, a retry policy and a timeout."""
    spec: dict[str, Any] = {"name": names[index]}
    if kind == "handler":
        # now and then a handler nobody registered: the run fails at start (HandlerNotFound)
        spec["handler"] = "unregistered" if rng.random() < 0.01 else rng.choice(sorted(HANDLERS))
    elif kind == "job":
        spec["job"] = job(rng)
    elif kind == "sleep":
        spec["sleep"] = sleep(rng)
    elif kind == "wait":
        spec["wait"] = wait(rng)
    elif kind == "parallel":
        spec["parallel"] = members(rng)
        if rng.random() < 0.5:
            spec["maxParallel"] = rng.randint(1, len(spec["parallel"]) + 1)
        if rng.random() < 0.5:
            spec["failFast"] = rng.random() < 0.6
    else:
        spec["workflowRef"] = {"name": "loop" if rng.random() < 0.015 else rng.choice(["child", "other"])}
    if rng.random() < 0.3:
        spec["when"] = when(rng, names, index)
    if rng.random() < 0.25:
        undo: dict[str, Any] = executor(rng)
        if (policy := retry(rng)) is not None:
            undo["retry"] = policy
        spec["compensate"] = undo
    if (policy := retry(rng)) is not None:
        spec["retry"] = policy
    if kind in ("handler", "job") and rng.random() < 0.2:  # (the CRD allows it on these only)
        spec["timeoutSeconds"] = rng.choice([1, 30, 600])
    return spec


def workflow(rng: random.Random) -> dict[str, Any]:
    """A Workflow's spec as a user writes it (valid for the CRD: one kind per task, unique names)."""
    names = rng.sample(STEP_NAMES, rng.randint(1, 6))
    spec: dict[str, Any] = {
        "tasks": [task(rng, names, i, rng.choice(KINDS)) for i in range(len(names))],
    }
    if rng.random() < 0.4:
        spec["defaults"] = {"retry": retry(rng) or {}, "timeoutSeconds": rng.choice([5, 60])}
    if rng.random() < 0.05:
        spec["inputSchema"] = rng.choice(
            [
                {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
                {"type": "object"},
                {"type": "nope"},
            ]
        )
    if rng.random() < 0.05:
        spec["ttlSecondsAfterFinished"] = rng.choice([0, 60])
    return spec


# ----- a case: the Workflow, the run and how the world behaves -----


@dataclass(frozen=True)
class Odds:
    """How the attempts of a case end (the rest succeed)."""

    fail: float
    permanent: float
    interrupt: float
    slow: float  # an attempt that runs for a few rounds
    lost: float  # a Job or child run that disappears (created again by the engine)


@dataclass(frozen=True)
class Case:
    seed: int
    workflow: dict[str, Any]
    input: dict[str, Any]
    labels: dict[str, str]
    workflows: dict[str, dict[str, Any]]  # the namespace's other Workflows (sub-workflows)
    depth: int
    max_descendants: int | None  # the run's share of its parent's bound on runs beneath it
    options: EngineOptions
    ttl: int | None
    odds: Odds
    steer_rounds: int  # rounds with spec changes, stray observations and clock jumps
    late_workflow: int  # rounds before the Workflow is seen (0: at once; -1: never)
    queued_rounds: int  # rounds the run waits for a slot of its Workflow's concurrency limit

    def describe(self) -> str:
        """The case as JSON, enough to reproduce it by hand."""
        return json.dumps(
            {
                "seed": self.seed,
                "workflow": self.workflow,
                "run": {
                    "input": self.input,
                    "labels": self.labels,
                    "depth": self.depth,
                    "max_descendants": self.max_descendants,
                    "ttl": self.ttl,
                },
                "workflows": self.workflows,
                "odds": self.odds.__dict__,
                "steer_rounds": self.steer_rounds,
                "max_pending_history": self.options.max_pending_history,
            },
            indent=1,
            default=str,
        )


def make_case(seed: int) -> Case:
    rng = random.Random(seed)
    child = {"tasks": [{"name": "Inner", "handler": "h1"}]}
    loop = {"tasks": [{"name": "Back", "workflowRef": {"name": WORKFLOW}}]}
    return Case(
        seed=seed,
        workflow=workflow(rng),
        input={"blob": "x" * 70_000} if rng.random() < 0.005 else json_object(rng),
        labels=rng.choice([{}, {"tier": "gold"}, {"tier": "basic", "team": "a"}]),
        workflows={"child": child, "loop": loop} if rng.random() < 0.8 else {},
        depth=9 if rng.random() < 0.01 else rng.choice([0, 0, 1]),
        max_descendants=rng.choice([None] * 7 + [0, 1, 2, 3]),
        options=EngineOptions(
            workflow_wait=timedelta(seconds=30),
            default_timeout_seconds=60,
            max_pending_history=rng.choice([200, 200, 200, 6, 12]),
            run_ttl=rng.choice([None, None, timedelta(seconds=30)]),
        ),
        ttl=rng.choice([None, None, None, 0, 10]),
        odds=Odds(
            fail=rng.choice([0.0, 0.1, 0.3, 0.5]),
            permanent=rng.choice([0.0, 0.05, 0.15]),
            interrupt=rng.choice([0.0, 0.05, 0.15]),
            slow=rng.choice([0.0, 0.2, 0.5]),
            lost=rng.choice([0.0, 0.0, 0.05]),
        ),
        steer_rounds=rng.randint(3, 40),
        late_workflow=rng.choice([0] * 30 + [2, -1]),
        queued_rounds=rng.choice([0] * 15 + [2]),
    )
