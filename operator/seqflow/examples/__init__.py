"""Handlers of the example workflows in workflows/ (load with SEQFLOW_HANDLER_MODULES=seqflow.examples)."""

from seqflow.examples import onboarding, orders  # noqa: F401 - importing registers the handlers
