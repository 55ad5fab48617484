"""The history store: runs, attempts and the activity log in MySQL (or embedded SQLite)."""
