"""The run store: every export, benchmark and evaluation, recorded in SQLite (WAL) as it happens.

One ``runs`` row per run (kind, parameters, provenance of its inputs, environment card, status,
and the process that wrote it) and one ``rows`` row per finished configuration, committed the
moment it finishes, so a kernel killed mid-sweep loses at most the configuration in flight. A run
left ``running`` by a process that is gone (same host, pid dead or reused) is marked
``interrupted`` the next time the store is read. Several processes may write at once (WAL, every
write its own short ``BEGIN IMMEDIATE`` transaction, a 30 s busy timeout).

``meta.schema_version`` says which layout a file has; :data:`MIGRATIONS` brings an older file up
to :data:`SCHEMA_VERSION` when it is opened, in one transaction.

A damaged file (truncated, overwritten, not SQLite at all) raises :class:`StoreDamaged` when read;
recording (:func:`default_store`) then goes on without the store after one warning line, and
:func:`repair` salvages every readable run and row into a fresh store, keeping the damaged file
aside. Messages name what works where they will be read: a magic in IPython, an environment
variable on the command line, a call from Python.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hfmagic.core.errors import UsageProblem

SCHEMA_VERSION = 3
STORE_ENV = "HFMAGIC_STORE"  # HFMAGIC_STORE=0: record nothing (what the command line has for HFMagic.store)
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


# -- what to tell whom -----------------------------------------------------------------------------
# the same advice in the words that work where it is read: a magic, the hfmagic command, Python
HINTS = {
    "repair": {"magic": "%hfmagic store repair", "cli": "hfmagic store repair",
               "python": "hfmagic.store.db.repair()"},
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
    return HINTS[name][audience()]


class StoreDamaged(UsageProblem):
    """The run store's file is damaged: truncated, overwritten, or not SQLite at all."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"the run store {path} is damaged ({reason}); {hint('repair')} saves every readable "
                         "run into a fresh store and keeps the damaged file aside (until then exports, benchmarks "
                         "and evaluations go on unrecorded)")


def _is_damage(exc: BaseException) -> bool:
    """Whether a sqlite3 error says the file itself is broken (not busy, not a bad query)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11+
    if name is not None:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    text = str(exc)
    return "malformed" in text or "not a database" in text


_warned: set = set()  # (path, inode) of damaged stores this process has already warned about


def _warn_damaged(exc: StoreDamaged, kind: str) -> None:
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
            _warn_damaged(exc, self.kind)

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
            if _is_damage(exc):
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
                from hfmagic.core.version import __version__

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
            if _is_damage(exc):
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
        from hfmagic.core.version import __version__

        if environment is None:
            from hfmagic.core.config import settings
            from hfmagic.core.envcard import environment_card

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
            _warn_damaged(exc, kind)
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
                _warn_damaged(exc, kind)
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
        from hfmagic.core.config import settings

        path = settings().store_path or settings().cache_path / "runs.sqlite"
    return Path(path).expanduser()


def recording_off() -> bool:
    """``%config HFMagic.store = False``, or HFMAGIC_STORE=0 (no, false, off) in the environment."""
    from hfmagic.core.config import settings

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
        _warn_damaged(exc, "")
        return None
    return store


# -- repair --------------------------------------------------------------------------------------
class Message(str):
    """A one-line answer shown as itself (no quotes) in IPython."""

    def __repr__(self) -> str:
        return str(self)


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
    _warned.clear()
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
