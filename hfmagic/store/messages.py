"""What the run store tells whom: advice in the words that work where it is read (a magic in
IPython, the ``hfmagic`` command, a call from Python), one-line answers, and the damaged-store error
with the one warning a process prints about it."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from hfmagic.core.errors import UsageProblem

STORE_ENV = "HFMAGIC_STORE"  # HFMAGIC_STORE=0: record nothing (what the command line has for HFMagic.store)

# the same advice in the words that work where it is read: a magic, the hfmagic command, Python
HINTS = {
    "repair": {"magic": "%hfmagic store repair", "cli": "hfmagic store repair",
               "python": "hfmagic.store.repair()"},
    "no_store": {"magic": "%config HFMagic.store = False", "cli": f"{STORE_ENV}=0 in the environment",
                 "python": "hfmagic.settings().store = False"},
    "other_file": {"magic": "set %config HFMagic.store_path to another file",
                   "cli": "set HFMAGIC_CACHE_DIR to another folder",
                   "python": "set hfmagic.settings().store_path to another file"},
    "gc": {"magic": "%hfmagic gc", "cli": "hfmagic gc", "python": "hfmagic.runs.history.gc()"},
    "runs": {"magic": "%hfmagic runs", "cli": "hfmagic runs", "python": "hfmagic.runs.history.list_runs()"},
    "recorders": {"magic": "%export_onnx, %benchmark and %evaluate", "cli": "hfmagic export, benchmark and evaluate",
                  "python": "export_onnx(), benchmark() and evaluate()"},
}


def audience() -> str:
    """Who reads hfmagic's messages in this process: "magic" (an IPython shell is running),
    "cli" (the ``hfmagic`` command) or "python"."""
    if "IPython" in sys.modules:
        from IPython import get_ipython

        if get_ipython() is not None:
            return "magic"
    return "cli" if "hfmagic.surface.cli" in sys.modules else "python"


def hint(name: str) -> str:
    """The advice ``name`` (a key of :data:`HINTS`) in the words of who reads it here."""
    return HINTS[name][audience()]


class Message(str):
    """A one-line answer shown as itself (no quotes) in IPython."""

    def __repr__(self) -> str:
        return str(self)


class StoreDamaged(UsageProblem):
    """The run store's file is damaged: truncated, overwritten, or not SQLite at all."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"the run store {path} is damaged ({reason}); {hint('repair')} saves every readable "
                         "run into a fresh store and keeps the damaged file aside (until then exports, benchmarks "
                         "and evaluations go on unrecorded)")


def is_damage(exc: BaseException) -> bool:
    """Whether a sqlite3 error says the file itself is broken (not busy, not a bad query)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11+
    if name is not None:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    text = str(exc)
    return "malformed" in text or "not a database" in text


_warned: set = set()  # (path, inode) of damaged stores this process has already warned about


def warn_damaged(exc: StoreDamaged, kind: str) -> None:
    """One line on stderr, once per damaged file per process: the work goes on unrecorded."""
    try:
        key = (str(exc.path), exc.path.stat().st_ino)
    except OSError:
        key = (str(exc.path), None)
    if key in _warned:
        return
    _warned.add(key)
    print(f"hfmagic: warning: the run store {exc.path} is damaged ({exc.reason}); this {kind or 'run'} and the "
          f"next ones are not recorded (their results are still returned): {hint('repair')} saves its readable "
          f"runs into a fresh store, {hint('no_store')} stops recording", file=sys.stderr, flush=True)


def forget_warnings() -> None:
    """Warn again about a store damaged again (after a repair put a fresh one in its place)."""
    _warned.clear()
