"""The run store: every export, benchmark and evaluation recorded in SQLite with its environment.

``hfmagic.store.repair()`` saves what a damaged store still holds into a fresh one
(:mod:`hfmagic.store.salvage`)."""

from hfmagic.store.salvage import repair

__all__ = ["repair"]
