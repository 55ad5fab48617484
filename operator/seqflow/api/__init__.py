"""The Workflow and WorkflowRun resources: pydantic models and the CRDs generated from them."""
