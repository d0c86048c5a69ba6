"""The run store: every export, benchmark and evaluation, recorded in SQLite (WAL) as it happens.

One ``runs`` row per run (kind, parameters, provenance of its inputs, environment card, status,
and the process that wrote it) and one ``rows`` row per finished configuration, committed the
moment it finishes, so a kernel killed mid-sweep loses at most the configuration in flight. A run
left ``running`` by a process that is gone (same host, pid dead or reused) is marked
``interrupted`` the next time the store is read. Several processes may write at once (WAL, every
write its own short ``BEGIN IMMEDIATE`` transaction, a 30 s busy timeout).

``meta.schema_version`` says which layout a file has; :data:`MIGRATIONS` brings an older file up
to :data:`SCHEMA_VERSION` when it is opened, in one transaction.

A damaged file (truncated, overwritten, not SQLite at all) raises
:class:`~hfmagic.store.messages.StoreDamaged` when read; recording (:func:`default_store`) then goes
on without the store after one warning line, and :func:`hfmagic.store.repair`
(:mod:`~hfmagic.store.salvage`) saves every readable run and row into a fresh store, keeping the
damaged file aside. Messages name what works where they will be read
(:mod:`~hfmagic.store.messages`): a magic in IPython, an environment variable on the command line,
a call from Python.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hfmagic.core.config import settings
from hfmagic.core.envcard import environment_card
from hfmagic.core.errors import UsageProblem
from hfmagic.core.version import __version__
from hfmagic.store.messages import STORE_ENV, StoreDamaged, hint, is_damage, warn_damaged

SCHEMA_VERSION = 3
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
        hfmagic_version TEXT,             -- the hfmagic that wrote it (v2)
        tag TEXT                          -- the user's note on it, %hfmagic tag (v3)
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
    # v3: a tag the user gives a run (%hfmagic tag RUN TEXT), shown in the runs list
    2: ["ALTER TABLE runs ADD COLUMN tag TEXT"],
}
RUN_FIELDS = ("id", "created", "finished", "kind", "status", "params", "provenance", "summary",
              "pid", "host", "hfmagic_version", "tag")
JSON_FIELDS = ("params", "provenance", "summary", "environment")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_jsonable, sort_keys=True)


def _jsonable(obj: Any):
    if isinstance(obj, Mapping):  # a typed row (hfmagic.core.records): the dict it reads as
        return dict(obj)
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
    """A run being recorded: ``add_row`` commits each finished configuration at once.

    When the store turns out damaged while recording, the run warns once and goes on unrecorded
    (``lost``): the work it records is never stopped by its record."""

    store: "RunStore"
    id: str | None
    kind: str
    _seq: int = 0
    lost: bool = False

    def _write(self, body) -> None:
        if self.lost:
            return
        try:
            with self.store.connect() as con:
                body(con)
        except StoreDamaged as exc:
            self.lost = True
            warn_damaged(exc, self.kind)

    def add_row(self, row: dict) -> None:
        self._write(lambda con: con.execute("INSERT INTO rows (run_id, seq, data) VALUES (?, ?, ?)",
                                            (self.id, self._seq, _dumps(row))))
        self._seq += 1

    def update_provenance(self, **parts) -> None:
        """Add to the run's provenance what is only known as it goes (e.g. the files it built)."""

        def body(con):
            (current,) = con.execute("SELECT provenance FROM runs WHERE id = ?", (self.id,)).fetchone()
            con.execute("UPDATE runs SET provenance = ? WHERE id = ?",
                        (_dumps({**json.loads(current), **parts}), self.id))

        self._write(body)

    def finish(self, status: str = "ok", summary: dict | None = None) -> None:
        self._write(lambda con: con.execute("UPDATE runs SET status = ?, finished = ?, summary = ? WHERE id = ?",
                                            (status, time.time(), _dumps(summary or {}), self.id)))


class RunStore:
    """A SQLite file of runs. ``RunStore()`` opens the configured one (``HFMagic.store_path``, by
    default ``runs.sqlite`` in the cache folder), creating or migrating it as needed."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = store_path(path)
        if self.path.is_dir():
            raise UsageProblem(f"the run store {self.path} is a folder; {hint('other_file')}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open()
        except StoreDamaged:
            raise
        except sqlite3.DatabaseError as exc:
            raise UsageProblem(f"{self.path} is not a usable run store ({exc}); move it away or "
                               f"{hint('other_file')}") from None

    def _open(self) -> None:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout = 30000")
            for attempt in range(100):  # two processes creating one store: SQLite refuses the mode
                try:                     # change to the second at once, whatever the busy timeout
                    if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        con.execute("PRAGMA journal_mode=WAL")  # kept in the file: done once per store
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 99:
                        raise
                    time.sleep(0.1)
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise StoreDamaged(self.path, str(exc)) from None
            raise
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
                raise UsageProblem(f"{self.path} was written by a newer hfmagic (store schema {version}; "
                                   f"hfmagic {__version__} reads up to {SCHEMA_VERSION}); upgrade hfmagic "
                                   f"or {hint('other_file')}")
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
        except BaseException as exc:
            if con.in_transaction:
                try:
                    con.execute("ROLLBACK")
                except sqlite3.DatabaseError:  # a damaged file may refuse that too
                    pass
            if is_damage(exc):
                raise StoreDamaged(self.path, str(exc)) from None
            raise
        finally:
            con.close()

    def check(self) -> None:
        """Raise :class:`StoreDamaged` unless SQLite's quick check finds the file whole (done once
        per file per process: a store found whole stays trusted; a write that fails later is caught
        where it happens)."""
        try:
            key = (str(self.path), self.path.stat().st_ino)
        except OSError:
            return
        if key in _checked:
            return
        with self.connect(write=False) as con:
            found = [r[0] for r in con.execute("PRAGMA quick_check(3)")]
        if found != ["ok"]:
            raise StoreDamaged(self.path, "; ".join(found))
        _checked.add(key)

    @property
    def schema_version(self) -> int:
        with self.connect(write=False) as con:
            return int(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    # -- writing ---------------------------------------------------------------------------------
    def start(self, kind: str, params: dict, provenance: dict | None = None,
              environment: dict | None = None) -> Run:
        if environment is None:

            environment = environment_card(settings().threads)
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
        unless the body called ``run.finish`` itself. A damaged store records nothing (one warning)
        and the body runs all the same, with a run whose ``id`` is None."""
        try:
            run = self.start(kind, params, provenance)
        except StoreDamaged as exc:
            warn_damaged(exc, kind)
            run = Run(self, None, kind, lost=True)
        try:
            yield run
        except KeyboardInterrupt:
            run.finish("interrupted")
            raise
        except BaseException as exc:
            run.finish("failed", {"error": f"{type(exc).__name__}: {exc}"})
            raise
        else:
            status = "ok"
            try:
                if not run.lost:
                    with self.connect() as con:
                        status = con.execute("SELECT status FROM runs WHERE id = ?", (run.id,)).fetchone()[0]
            except StoreDamaged as exc:
                warn_damaged(exc, kind)
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

    def runs(self, kind: str | None = None, limit: int | None = None, model: str | None = None,
             since: float | None = None) -> list[dict]:
        """Runs, newest first, each with its row count under ``rows``.

        ``model``: runs whose model has that name (the variable it was bound to) or source, or whose
        weights' sha256 starts with it; ``since``: runs started at or after that time (epoch seconds)."""
        where, args = [], []
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if model:  # the run's model, or any of a several-model run's
            each = "SELECT 1 FROM json_each(provenance, '$.models') AS m WHERE "
            match = ["json_extract(provenance, '$.model.name') = ?", "json_extract(provenance, '$.model.source') = ?",
                     f"EXISTS ({each}json_extract(m.value, '$.name') = ? OR json_extract(m.value, '$.source') = ?)"]
            args += [model, model, model, model]
            if len(model) >= 6 and all(c in "0123456789abcdef" for c in model.lower()):
                match += ["json_extract(provenance, '$.model.weights_sha256') LIKE ?",
                          f"EXISTS ({each}json_extract(m.value, '$.weights_sha256') LIKE ?)"]
                args += [model.lower() + "%"] * 2
            where.append("(" + " OR ".join(match) + ")")
        if since is not None:
            where.append("created >= ?")
            args.append(since)
        query = (f"SELECT {', '.join(RUN_FIELDS)}, (SELECT COUNT(*) FROM rows WHERE run_id = runs.id) "
                 "FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created DESC, id DESC"
                 + (f" LIMIT {int(limit)}" if limit else ""))
        self._mark_dead()
        with self.connect(write=False) as con:
            found = con.execute(query, args).fetchall()
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
            raise UsageProblem(f"no run {run_id!r} in {self.path}; {hint('runs')} lists them" if not found else
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

    def referenced_files(self) -> tuple[set[str], set[str]]:
        """The sha256s and paths of every file a recorded run names: its provenance's ``files`` and
        its rows' ``sha256`` and ``path`` (an export's variants)."""
        with self.connect(write=False) as con:
            files = con.execute("SELECT value FROM runs, json_each(runs.provenance, '$.files')").fetchall()
            rows = con.execute("SELECT json_extract(data, '$.sha256'), json_extract(data, '$.path') FROM rows "
                               "WHERE json_extract(data, '$.sha256') IS NOT NULL "
                               "OR json_extract(data, '$.path') IS NOT NULL").fetchall()
        shas = {v for (v,) in files if isinstance(v, str)} | {sha for sha, _ in rows if isinstance(sha, str)}
        return shas, {path for _, path in rows if isinstance(path, str)}

    # -- housekeeping ------------------------------------------------------------------------------
    def tag(self, run_id: str, text: str | None) -> str:
        """Set (or with None/"" clear) a run's tag; returns the run's full id."""
        full = self.resolve(run_id)
        with self.connect() as con:
            con.execute("UPDATE runs SET tag = ? WHERE id = ?", (text or None, full))
        return full

    def delete(self, run_ids: list[str]) -> int:
        """Delete these runs (full ids) and their rows in one transaction; the rows deleted.
        A run still being recorded by a live process is refused."""
        self._mark_dead()
        with self.connect() as con:
            marks = ", ".join("?" * len(run_ids))
            running = [r[0] for r in con.execute(f"SELECT id FROM runs WHERE id IN ({marks}) AND status = 'running'",
                                                 run_ids)]
            if running:
                raise UsageProblem(f"run {running[0]} is still being recorded; let it finish (or stop it) first, "
                                   "then delete it")
            rows = con.execute(f"DELETE FROM rows WHERE run_id IN ({marks})", run_ids).rowcount
            con.execute(f"DELETE FROM runs WHERE id IN ({marks})", run_ids)
        return rows


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


_checked: set = set()  # (path, inode) of stores this process found whole


def store_path(path: str | os.PathLike | None = None) -> Path:
    """The store's file: ``path``, else ``HFMagic.store_path``, else runs.sqlite in the cache folder."""
    if path is None:
        path = settings().store_path or settings().cache_path / "runs.sqlite"
    return Path(path).expanduser()


def recording_off() -> bool:
    """``%config HFMagic.store = False``, or HFMAGIC_STORE=0 (no, false, off) in the environment."""

    return not settings().store or os.environ.get(STORE_ENV, "").strip().lower() in ("0", "no", "false", "off")


def default_store() -> RunStore | None:
    """The store to record in: the configured one, or None when recording is off or the store is
    damaged (one warning line says so; the caller's work goes on unrecorded)."""
    if recording_off():
        return None
    try:
        store = RunStore()
        store.check()
    except StoreDamaged as exc:
        warn_damaged(exc, "")
        return None
    return store
