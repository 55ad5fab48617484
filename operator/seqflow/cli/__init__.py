"""The command lines: `seqflow` (the operator, its CRDs, its history, a handler inside a Job's
container) and `kubectl seqflow` (the plugin)."""
