"""The run store: every export, benchmark and evaluation recorded in SQLite with its environment."""
