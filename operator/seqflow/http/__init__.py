"""The operator's HTTP endpoints: the probes and the run read API (history), starting and
controlling runs (control), webhooks, the dashboard, and who may do which (auth)."""
