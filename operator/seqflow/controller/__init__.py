"""The machinery every controller of seqflow (runs, schedules) shares: the work queue of keys,
the worker loop around it, and the tasks they leave running in the background."""
