"""The WorkflowSchedule controller (controller): cron schedules that start runs, around the
pure `plan_schedule()` of seqflow.engine.schedule."""
