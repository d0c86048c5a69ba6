"""The run store: every export, benchmark and evaluation, recorded in SQLite (WAL) as it happens.

One ``runs`` row per run (kind, parameters, provenance of its inputs, environment card, status,
and the process that wrote it) and one ``rows`` row per finished configuration, committed the
moment it finishes, so a kernel killed mid-sweep loses at most the configuration in flight. A run
left ``running`` by a process that is gone (same host, pid dead or reused) is marked
``interrupted`` the next time the store is read. Several processes may write at once (WAL, every
write its own short ``BEGIN IMMEDIATE`` transaction, a 30 s busy timeout).

``meta.schema_version`` says which layout a file has; :data:`MIGRATIONS` brings an older file up
to :data:`SCHEMA_VERSION` when it is opened, in one transaction.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hfmagic.errors import UsageProblem

SCHEMA_VERSION = 2
SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        finished REAL,
        kind TEXT NOT NULL,               -- export | benchmark | evaluate
        status TEXT NOT NULL,             -- running | ok | interrupted | failed
        params TEXT NOT NULL,             -- JSON: the core function's arguments, enough to rerun it
        provenance TEXT NOT NULL,         -- JSON: model source/revision/sha256, files, dataset fingerprint
        environment TEXT NOT NULL,        -- JSON: the environment card
        summary TEXT,                     -- JSON: notes and totals written when it finishes
        pid INTEGER,                      -- the process recording it (v2)
        host TEXT,                        -- and its host name (v2)
        proc_start INTEGER,               -- and its start time in clock ticks, against pid reuse (v2)
        hfmagic_version TEXT              -- the hfmagic that wrote it (v2)
    )""",
    """CREATE TABLE rows (
        run_id TEXT NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        data TEXT NOT NULL,               -- JSON: one finished configuration's figures
        PRIMARY KEY (run_id, seq)
    )""",
    "CREATE INDEX runs_created ON runs(created)",
]
# version -> the statements that bring a store of that version to the next one
MIGRATIONS: dict[int, list[str]] = {
    # v2: which process wrote a run, so that one left "running" by a dead process can be told apart
    # from one still going, and which hfmagic wrote it
    1: [f"ALTER TABLE runs ADD COLUMN {col}" for col in
        ("pid INTEGER", "host TEXT", "proc_start INTEGER", "hfmagic_version TEXT")],
}
RUN_FIELDS = ("id", "created", "finished", "kind", "status", "params", "provenance", "summary",
              "pid", "host", "hfmagic_version")
JSON_FIELDS = ("params", "provenance", "summary", "environment")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_jsonable, sort_keys=True)


def _jsonable(obj: Any):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[19])


def _alive(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, start = stat
    return state != "Z" and (started is None or start == started)


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

    def update_provenance(self, **parts) -> None:
        """Add to the run's provenance what is only known as it goes (e.g. the files it built)."""
        with self.store.connect() as con:
            (current,) = con.execute("SELECT provenance FROM runs WHERE id = ?", (self.id,)).fetchone()
            con.execute("UPDATE runs SET provenance = ? WHERE id = ?",
                        (_dumps({**json.loads(current), **parts}), self.id))

    def finish(self, status: str = "ok", summary: dict | None = None) -> None:
        with self.store.connect() as con:
            con.execute("UPDATE runs SET status = ?, finished = ?, summary = ? WHERE id = ?",
                        (status, time.time(), _dumps(summary or {}), self.id))


class RunStore:
    """A SQLite file of runs. ``RunStore()`` opens the configured one (``HFMagic.store_path``, by
    default ``runs.sqlite`` in the cache folder), creating or migrating it as needed."""

    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            from hfmagic.config import settings

            path = settings().store_path or settings().cache_path / "runs.sqlite"
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise UsageProblem(f"the run store {self.path} is a folder; set %config HFMagic.store_path "
                               "to a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            raise UsageProblem(f"{self.path} is not a usable run store ({exc}); move it away or set "
                               "%config HFMagic.store_path to another file") from None

    def _open(self) -> None:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout = 30000")
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")  # kept in the file: done once per store
        finally:
            con.close()
        with self.connect() as con:  # one process at a time creates or migrates the layout
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "runs" not in tables:
                for statement in SCHEMA:
                    con.execute(statement)
                con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                return
            version = int(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
            if version > SCHEMA_VERSION:
                from hfmagic import __version__

                raise UsageProblem(f"{self.path} was written by a newer hfmagic (store schema {version}; "
                                   f"hfmagic {__version__} reads up to {SCHEMA_VERSION}); upgrade hfmagic "
                                   "or set %config HFMagic.store_path to another file")
            migrate(con, version)

    @contextmanager
    def connect(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A connection inside one transaction, committed on leaving (rolled back on error).

        Writes take the write lock up front (``BEGIN IMMEDIATE``); reads take a snapshot
        (``BEGIN``), which under WAL neither waits for writers nor blocks them."""
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no commit
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    @property
    def schema_version(self) -> int:
        with self.connect(write=False) as con:
            return int(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    # -- writing ---------------------------------------------------------------------------------
    def start(self, kind: str, params: dict, provenance: dict | None = None,
              environment: dict | None = None) -> Run:
        from hfmagic import __version__

        if environment is None:
            from hfmagic.envcard import environment_card

            environment = environment_card()
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        stat = _proc_stat(os.getpid())
        with self.connect() as con:
            con.execute("INSERT INTO runs (id, created, kind, status, params, provenance, environment, pid, "
                        "host, proc_start, hfmagic_version) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                        (run_id, time.time(), kind, _dumps(params), _dumps(provenance or {}),
                         _dumps(environment), os.getpid(), socket.gethostname(),
                         stat[1] if stat else None, __version__))
        return Run(self, run_id, kind)

    @contextmanager
    def recording(self, kind: str, params: dict, provenance: dict | None = None) -> Iterator[Run]:
        """Record a run; it ends ``ok``, ``interrupted`` (Ctrl-C) or ``failed`` (an exception)
        unless the body called ``run.finish`` itself."""
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

    def annotate(self, run_id: str, **parts) -> None:
        """Add keys to a finished run's provenance (e.g. ``rerun_of``)."""
        Run(self, self.resolve(run_id), "").update_provenance(**parts)

    # -- reading ---------------------------------------------------------------------------------
    def _mark_dead(self) -> None:
        """Runs left ``running`` by a process of this host that is gone become ``interrupted``.

        Looked for under a read snapshot; the write lock is taken only when one is found."""
        host = socket.gethostname()
        with self.connect(write=False) as con:
            candidates = con.execute("SELECT id, pid, proc_start FROM runs WHERE status = 'running' "
                                     "AND host = ? AND pid IS NOT NULL", (host,)).fetchall()
        dead = [(run_id, pid) for run_id, pid, started in candidates if not _alive(pid, started)]
        if not dead:
            return
        with self.connect() as con:
            for run_id, pid in dead:
                reason = (f"process {pid} on {host} ended before the run finished (killed or crashed); "
                          "the rows it committed are kept")
                con.execute("UPDATE runs SET status = 'interrupted', summary = ? WHERE id = ? "
                            "AND status = 'running'", (_dumps({"error": reason}), run_id))

    def runs(self, kind: str | None = None, limit: int | None = None) -> list[dict]:
        """Runs, newest first, each with its row count under ``rows``."""
        query = (f"SELECT {', '.join(RUN_FIELDS)}, (SELECT COUNT(*) FROM rows WHERE run_id = runs.id) "
                 "FROM runs" + (" WHERE kind = ?" if kind else "") + " ORDER BY created DESC, id DESC"
                 + (f" LIMIT {int(limit)}" if limit else ""))
        self._mark_dead()
        with self.connect(write=False) as con:
            found = con.execute(query, [kind] if kind else []).fetchall()
        return [_decode(dict(zip(RUN_FIELDS + ("rows",), r))) for r in found]

    def resolve(self, run_id: str) -> str:
        """The full id of the one run whose id is ``run_id`` or ends with it."""
        pattern = "%" + str(run_id).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self.connect(write=False) as con:
            found = [r[0] for r in con.execute("SELECT id FROM runs WHERE id = ? OR id LIKE ? ESCAPE '\\'",
                                               (run_id, pattern))]
        if str(run_id) in found:
            return str(run_id)
        if len(found) != 1:
            raise UsageProblem(f"no run {run_id!r} in {self.path}; %hfmagic runs lists them" if not found else
                               f"{run_id!r} is the end of {len(found)} run ids ({', '.join(sorted(found)[:4])}"
                               f"{', ...' if len(found) > 4 else ''}); give more of the id")
        return found[0]

    def get(self, run_id: str) -> dict:
        """One run (id or unique suffix), with its environment and all its rows."""
        full = self.resolve(run_id)
        fields = RUN_FIELDS + ("environment",)
        self._mark_dead()
        with self.connect(write=False) as con:
            r = con.execute(f"SELECT {', '.join(fields)} FROM runs WHERE id = ?", (full,)).fetchone()
            rows = con.execute("SELECT data FROM rows WHERE run_id = ? ORDER BY seq", (full,)).fetchall()
        return _decode(dict(zip(fields, r))) | {"rows": [json.loads(x[0]) for x in rows]}

    def rows(self, run_id: str) -> list[dict]:
        with self.connect(write=False) as con:
            found = con.execute("SELECT data FROM rows WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
        return [json.loads(x[0]) for x in found]


def _decode(run: dict) -> dict:
    for key in JSON_FIELDS:
        if key in run:
            run[key] = json.loads(run[key]) if run[key] else None
    return run


def migrate(con: sqlite3.Connection, version: int) -> None:
    """Bring a store written by an older hfmagic up to SCHEMA_VERSION, step by step."""
    while version < SCHEMA_VERSION:
        for statement in MIGRATIONS[version]:
            con.execute(statement)
        version += 1
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))


def default_store() -> RunStore | None:
    """The configured store, or None when ``%config HFMagic.store = False``."""
    from hfmagic.config import settings

    return RunStore() if settings().store else None
