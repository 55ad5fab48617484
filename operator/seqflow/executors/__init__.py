"""Ways to execute a task attempt: in-process Python handlers and batch/v1 Jobs."""
