"""Ways to execute a task attempt: in-process Python handlers (and, later, batch/v1 Jobs)."""
