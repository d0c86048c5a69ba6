"""The run store: every export, benchmark and evaluation, recorded in SQLite (WAL) as it happens.

One ``runs`` row per run (kind, parameters, provenance of its inputs, environment card, status)
and one ``rows`` row per finished configuration, committed the moment it finishes, so a kernel
killed mid-sweep loses at most the configuration in flight. Several processes may write at once
(WAL plus a busy timeout). ``meta.schema_version`` says which layout a file has; older files are
migrated when opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    finished REAL,
    kind TEXT NOT NULL,               -- export | benchmark | evaluate
    status TEXT NOT NULL,             -- running | ok | interrupted | failed
    params TEXT NOT NULL,             -- JSON: the arguments, enough to rerun it
    provenance TEXT NOT NULL,         -- JSON: model source/revision/sha256, files, dataset fingerprint
    environment TEXT NOT NULL,        -- JSON: the environment card
    summary TEXT                      -- JSON: notes and totals written when it finishes
);
CREATE TABLE IF NOT EXISTS rows (
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,               -- JSON: one finished configuration's figures
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created);
"""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_jsonable, sort_keys=True)


def _jsonable(obj: Any):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


@dataclass
class Run:
    """A run being recorded: ``add_row`` commits each finished configuration at once."""

    store: "RunStore"
    id: str
    kind: str
    _seq: int = 0

    def add_row(self, row: dict) -> None:
        with self.store.connect() as con:
            con.execute("INSERT INTO rows (run_id, seq, data) VALUES (?, ?, ?)", (self.id, self._seq, _dumps(row)))
        self._seq += 1

    def finish(self, status: str = "ok", summary: dict | None = None) -> None:
        with self.store.connect() as con:
            con.execute("UPDATE runs SET status = ?, finished = ?, summary = ? WHERE id = ?",
                        (status, time.time(), _dumps(summary or {}), self.id))


class RunStore:
    """A SQLite file of runs. ``RunStore()`` opens the one in the cache folder."""

    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            from hfmagic.config import settings

            path = settings().cache_path / "runs.sqlite"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)  # IF NOT EXISTS: safe when another process got here first
        finally:
            con.close()
        with self.connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) < SCHEMA_VERSION:
                migrate(con, int(row[0]))

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def start(self, kind: str, params: dict, provenance: dict | None = None,
              environment: dict | None = None) -> Run:
        if environment is None:
            from hfmagic.envcard import environment_card

            environment = environment_card()
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with self.connect() as con:
            con.execute("INSERT INTO runs (id, created, kind, status, params, provenance, environment) "
                        "VALUES (?, ?, ?, 'running', ?, ?, ?)",
                        (run_id, time.time(), kind, _dumps(params), _dumps(provenance or {}), _dumps(environment)))
        return Run(self, run_id, kind)

    @contextmanager
    def recording(self, kind: str, params: dict, provenance: dict | None = None) -> Iterator[Run]:
        """Record a run; it ends ``ok``, ``interrupted`` (Ctrl-C) or ``failed`` (an exception)."""
        run = self.start(kind, params, provenance)
        try:
            yield run
        except KeyboardInterrupt:
            run.finish("interrupted")
            raise
        except BaseException as exc:
            run.finish("failed", {"error": f"{type(exc).__name__}: {exc}"})
            raise
        else:
            with self.connect() as con:
                status = con.execute("SELECT status FROM runs WHERE id = ?", (run.id,)).fetchone()[0]
            if status == "running":
                run.finish("ok")

    def runs(self, kind: str | None = None, limit: int | None = None) -> list[dict]:
        query = "SELECT id, created, finished, kind, status, params, provenance, summary, " \
                "(SELECT COUNT(*) FROM rows WHERE run_id = runs.id) FROM runs"
        args: list = []
        if kind:
            query += " WHERE kind = ?"
            args.append(kind)
        query += " ORDER BY created DESC" + (f" LIMIT {int(limit)}" if limit else "")
        with self.connect() as con:
            found = con.execute(query, args).fetchall()
        return [{"id": r[0], "created": r[1], "finished": r[2], "kind": r[3], "status": r[4],
                 "params": json.loads(r[5]), "provenance": json.loads(r[6]),
                 "summary": json.loads(r[7]) if r[7] else None, "rows": r[8]} for r in found]

    def get(self, run_id: str) -> dict:
        from hfmagic.errors import UsageProblem

        with self.connect() as con:
            r = con.execute("SELECT id, created, finished, kind, status, params, provenance, environment, "
                            "summary FROM runs WHERE id = ? OR id LIKE ?", (run_id, f"%{run_id}")).fetchall()
            if len(r) != 1:
                raise UsageProblem(f"no run {run_id!r} in {self.path}" if not r else
                                   f"{run_id!r} matches {len(r)} runs; give more of the id")
            r = r[0]
            rows = con.execute("SELECT data FROM rows WHERE run_id = ? ORDER BY seq", (r[0],)).fetchall()
        return {"id": r[0], "created": r[1], "finished": r[2], "kind": r[3], "status": r[4],
                "params": json.loads(r[5]), "provenance": json.loads(r[6]), "environment": json.loads(r[7]),
                "summary": json.loads(r[8]) if r[8] else None, "rows": [json.loads(x[0]) for x in rows]}


def migrate(con: sqlite3.Connection, version: int) -> None:
    """Bring a store written by an older hfmagic up to SCHEMA_VERSION (none older exists yet)."""
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def default_store() -> RunStore | None:
    """The store in the cache folder, or None when ``%config HFMagic.store = False``."""
    from hfmagic.config import settings

    return RunStore() if settings().store else None
