"""Local runs: a Workflow run on this machine, without a cluster, through the same `plan()` as
the operator (`seqflow run --local`, and the `seqflow.testing` pytest plugin).

`files` loads Workflows from YAML files, `clock` keeps the virtual time, `steps` carries out
the attempts (in-process handlers, http requests, Jobs as local processes, stubs), `signals`
says where signals come from, `driver` drives a run and its sub-workflows' runs to their end,
`result` is what a run ended as, `options` turns command-line values into a run's options.
"""

from seqflow.local.driver import LocalRun, LocalWorld, run_local
from seqflow.local.files import WorkflowFileError, Workflows, load_workflows
from seqflow.local.options import LocalOptions, UsageError
from seqflow.local.result import LocalResult, StepResult, Transition
from seqflow.local.signals import GivenSignals, SignalSource, TerminalSignals

__all__ = [
    "GivenSignals",
    "LocalOptions",
    "LocalResult",
    "LocalRun",
    "LocalWorld",
    "SignalSource",
    "StepResult",
    "TerminalSignals",
    "Transition",
    "UsageError",
    "WorkflowFileError",
    "Workflows",
    "load_workflows",
    "run_local",
]
