"""Handlers of the example workflows in workflows/ (load with SEQFLOW_HANDLER_MODULES=seqflow.examples)."""

# Importing the modules registers their handlers.
from seqflow.examples import approvals, fulfilment, onboarding, orders, transfers, warehouse  # noqa: F401
