"""The WorkflowRun controller: the I/O shell around the engine. `reconciler` observes a run,
plans it and writes its status; the modules beside it own one concern each (what is cached,
what each run holds here, which replica serves a run, admission under concurrency limits, the
progress journal, the status writes, the history flushes, the actions, the fast steps, the
Workflows' Ready condition)."""
