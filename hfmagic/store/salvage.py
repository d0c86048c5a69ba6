"""Repairing a damaged run store: every run and row SQLite can still read, saved into a fresh store
put in the damaged one's place (which is kept aside). ``hfmagic.store.repair()``, ``%hfmagic store
repair``, ``hfmagic store repair``."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from hfmagic.store.db import RunStore, store_path
from hfmagic.store.messages import Message, StoreDamaged, forget_warnings


def damage(path: Path) -> str | None:
    """Why the store at ``path`` is damaged, or None when SQLite's integrity check passes."""
    try:
        store = RunStore(path)
        with store.connect(write=False) as con:
            found = [r[0] for r in con.execute("PRAGMA integrity_check(3)")]
    except StoreDamaged as exc:
        return exc.reason
    return None if found == ["ok"] else "; ".join(found)


def repair(path: str | os.PathLike | None = None) -> Message:
    """Salvage every readable run (and its readable rows) of a damaged store into a fresh one in its
    place; the damaged file is kept beside it as ``<name>.damaged-<time>``. A store that is whole is
    left as it is."""
    path = store_path(path)
    if not path.is_file():
        return Message(f"there is no run store at {path}; nothing to repair")
    reason = damage(path)
    if reason is None:
        return Message(f"the run store {path} is not damaged (SQLite's integrity check: ok); nothing to repair")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".hfmagic-repair-") as tmp:
        copy = Path(tmp) / "damaged.sqlite"  # read from a copy: the damaged file stays as it was
        shutil.copyfile(path, copy)
        if Path(f"{path}-wal").is_file():  # commits not yet checkpointed into the file
            shutil.copyfile(f"{path}-wal", f"{copy}-wal")
        runs, rows, unreadable = salvage(copy)
        fresh = RunStore(Path(tmp) / "fresh.sqlite")
        columns = [c for c in _columns(fresh) if c in (runs[0] if runs else {})]
        with fresh.connect() as con:
            if runs:
                con.executemany(f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                                [[run[c] for c in columns] for run in runs])
            con.executemany("INSERT OR IGNORE INTO rows (run_id, seq, data) VALUES (?, ?, ?)", rows)
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while aside.exists():
            n += 1
            aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        os.replace(path, aside)
        for suffix in ("-wal", "-shm"):  # the damaged file's journal goes with it, under its new name
            if Path(f"{path}{suffix}").exists():
                os.replace(f"{path}{suffix}", f"{aside}{suffix}")
        os.replace(fresh.path, path)
    forget_warnings()
    lost = f"; {unreadable} more could not be read" if unreadable else ""
    return Message(f"saved {len(runs)} run{'s' if len(runs) != 1 else ''} ({len(rows)} rows) of the damaged store "
                   f"into a fresh one at {path}{lost}; the damaged file ({reason}) is kept as {aside}")


def _columns(store: RunStore) -> list[str]:
    with store.connect(write=False) as con:
        return [r[1] for r in con.execute("PRAGMA table_info(runs)")]


def salvage(path: Path) -> tuple[list[dict], list[tuple], int]:
    """What can still be read of a damaged store: its runs (dicts of their columns), the rows of
    those runs as ``(run_id, seq, data)``, and how many runs are known to be there (a table scan or
    an index lists them) but could not be read.

    Each run and row is read on its own (by rowid), found through every way in: the tables read
    forwards and backwards, each index, and every rowid up to a thousand past the highest seen
    (a scan stops at the first damaged page; a lookup by rowid goes around it), so one damaged
    page costs only what lies on it. ``writable_schema`` lets SQLite read a file shorter than its
    header says (a truncated file)."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA writable_schema = ON")

        def scan(query: str, args=()) -> list:
            found = []
            try:
                for r in con.execute(query, args):
                    found.append(r)
            except sqlite3.DatabaseError:  # damaged from here on: keep what came before
                pass
            return found

        indexes = {t: [name for (name,) in scan("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
                                                (t,))] for t in ("runs", "rows")}
        columns = [r[1] for r in scan("PRAGMA table_info(runs)")]
        if "id" not in columns:
            return [], [], 0

        def rowids(table: str) -> tuple[set, list]:
            """The rowids a scan lists, and those to try: these and every other up to 1000 past them."""
            ways = [f"SELECT rowid FROM {table} NOT INDEXED", f"SELECT rowid FROM {table} NOT INDEXED ORDER BY rowid DESC"]
            ways += [f'SELECT rowid FROM {table} INDEXED BY "{ix}"' for ix in indexes[table]]
            seen = {r[0] for way in ways for r in scan(way)}
            return seen, sorted(seen | set(range(1, max(seen, default=0) + 1001)))

        runs, unreadable = [], 0
        listed, tries = rowids("runs")
        for rowid in tries:
            got = scan(f"SELECT {', '.join(columns)} FROM runs WHERE rowid = ?", (rowid,))
            run = dict(zip(columns, got[0])) if got else None
            if run is not None and _readable(run):
                runs.append(run)
            elif rowid in listed:  # there, but on a damaged page
                unreadable += 1
        ids = {run["id"] for run in runs}
        rows = []
        for rowid in rowids("rows")[1]:
            got = scan("SELECT run_id, seq, data FROM rows WHERE rowid = ?", (rowid,))
            if got and got[0][0] in ids and _json(got[0][2]):
                rows.append(got[0])
        return runs, rows, unreadable
    finally:
        con.close()


def _json(text) -> bool:
    try:
        json.loads(text)
    except (TypeError, ValueError):
        return False
    return True


def _readable(run: dict) -> bool:
    """A salvaged run has what reading it back needs: its keys and JSON that parses."""
    if not all(isinstance(run.get(k), str) for k in ("id", "kind", "status")) or run.get("created") is None:
        return False
    return all(_json(run[k]) for k in ("params", "provenance", "environment") if k in run) and \
        (run.get("summary") is None or _json(run["summary"]))
