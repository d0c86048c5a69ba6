"""The run store: nothing lost (real processes, SIGKILL, two writers, Ctrl-C mid-sweep, an old layout
migrated), stores it cannot use named, run states and id suffixes."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from hfmagic.core.errors import UsageProblem
from hfmagic.store.db import SCHEMA_VERSION, RunStore
from tests.support.store import FIXTURES


# a process that records one run, committing a row per "configuration" as fast as it can, and says
# on stdout each row it has committed
WRITER = """
import sys
from hfmagic.store.db import RunStore
store = RunStore(sys.argv[1])
runs, rows = int(sys.argv[2]), int(sys.argv[3])
for r in range(runs):
    with store.recording("benchmark", {"writer": sys.argv[4], "run": r}, {"model": {"name": "m"}}) as run:
        print("run", run.id, flush=True)
        for i in range(rows):
            run.add_row({"variant": "v", "backend": "b", "batch_size": i, "seq_len": 8, "status": "ok",
                         "p50_ms": float(i), "writer": sys.argv[4], "padding": "x" * 2000})
            print("row", i, flush=True)
"""


def writer(path, runs, rows, name):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(runs), str(rows), name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_recording_loses_at_most_the_row_in_flight(tmp_path):
    path = tmp_path / "runs.sqlite"
    proc = writer(path, 1, 1_000_000, "killed")
    run_id = proc.stdout.readline().split()[1]
    acknowledged = -1
    while acknowledged < 200:  # it is writing flat out: the kill lands in the middle of a commit
        acknowledged = int(proc.stdout.readline().split()[1])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    store = RunStore(path)  # opens: no corruption, nothing to repair by hand
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    run = store.get(run_id)
    seqs = [row["batch_size"] for row in run["rows"]]
    assert len(seqs) >= acknowledged + 1 and seqs == list(range(len(seqs)))  # every acknowledged row, in order
    listed = {r["id"]: r for r in store.runs()}
    assert listed[run_id]["status"] == "interrupted" and listed[run_id]["rows"] == len(seqs)
    assert f"process {proc.pid}" in listed[run_id]["summary"]["error"]
    assert listed[run_id]["pid"] == proc.pid and listed[run_id]["host"]


SHAPES = [1, 2, 4, 8, 16, 32]


def sweep_with_two_rows_done(tmp_path, model, *flags):
    """A `hfmagic benchmark` process over SHAPES, once it has committed two rows; and its store."""
    env = {**os.environ, "HFMAGIC_CACHE_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "hfmagic", "benchmark", str(model), *flags,
                             "--batch-sizes", ",".join(map(str, SHAPES)), "--seq-lens", "16", "--warmup", "1",
                             "--min-time", "0.5", "--order", "sequential"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path, deadline = tmp_path / "runs.sqlite", time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and any(r["rows"] >= 2 for r in RunStore(path).runs(kind="benchmark")):
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read()
    return proc, RunStore(path)


def test_a_benchmark_killed_mid_sweep_keeps_its_finished_configurations(tmp_path, tiny_bert):
    proc, store = sweep_with_two_rows_done(tmp_path, tiny_bert, "--variants", "torch", "--inline", "-q")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    (listed,) = store.runs(kind="benchmark")
    assert listed["status"] == "interrupted" and 2 <= listed["rows"] < len(SHAPES)
    rows = store.get(listed["id"])["rows"]
    assert [r["batch_size"] for r in rows] == SHAPES[:len(rows)]
    assert all(r["status"] == "ok" and r["p50_ms"] > 0 and len(r["samples_ms"]) == r["runs"] for r in rows)


def test_ctrl_c_mid_sweep_keeps_the_finished_rows_and_ends_the_worker(tmp_path, tiny_bert):
    """A real SIGINT (what Ctrl-C sends) to a process measuring in a worker: the finished
    configurations are kept, the run says interrupted, and the worker is gone with the sweep."""
    import psutil

    proc, store = sweep_with_two_rows_done(tmp_path, tiny_bert, "--variants", "fp32")
    workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    (listed,) = store.runs(kind="benchmark")
    assert listed["status"] == "interrupted" and 2 <= listed["rows"] <= len(SHAPES)
    rows = store.get(listed["id"])["rows"]
    assert sum(r["status"] == "ok" for r in rows) >= 2 and rows[-1]["status"] == "skipped: interrupted"
    assert f"interrupted: {sum(r['status'] == 'ok' for r in rows)} of {len(SHAPES)} configurations finished" in out
    assert workers and not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                               for pid in workers)


def test_two_processes_writing_at_once_both_keep_all_their_runs(tmp_path):
    path = tmp_path / "fresh" / "runs.sqlite"  # both create the file too
    procs = [writer(path, 3, 60, name) for name in ("a", "b")]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    runs = RunStore(path).runs()
    assert len(runs) == 6 and all(r["status"] == "ok" and r["rows"] == 60 for r in runs)
    assert sorted(r["params"]["writer"] for r in runs) == ["a"] * 3 + ["b"] * 3
    spans = {w: (min(r["created"] for r in runs if r["params"]["writer"] == w),
                 max(r["finished"] for r in runs if r["params"]["writer"] == w)) for w in "ab"}
    assert spans["a"][0] < spans["b"][1] and spans["b"][0] < spans["a"][1]  # they did write at the same time
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reading_the_store_neither_waits_for_nor_blocks_a_writer(tmp_path):
    import threading

    store = RunStore(tmp_path / "runs.sqlite")
    with store.recording("export", {}, {}) as run:
        run.add_row({"variant": "fp32"})
    writer = sqlite3.connect(store.path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another notebook in the middle of a write
    found = []
    reader = threading.Thread(target=lambda: found.append(store.get(run.id[-6:])["rows"]))
    reader.start()
    reader.join(timeout=5)
    writer.execute("ROLLBACK")
    writer.close()
    assert not reader.is_alive() and found == [[{"variant": "fp32"}]]


def test_a_v1_store_is_migrated_and_keeps_its_runs(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.executescript((FIXTURES / "store-v1.sql").read_text())
    store = RunStore(path)
    assert store.schema_version == SCHEMA_VERSION >= 3
    with sqlite3.connect(path) as con:
        columns = [r[1] for r in con.execute("PRAGMA table_info(runs)")]
    assert {"pid", "host", "proc_start", "hfmagic_version"} <= set(columns)
    old = {r["id"]: r for r in store.runs()}
    assert {r["status"] for r in old.values()} == {"ok", "running"}  # a v1 run left running has no pid to check
    bench = store.get("f3310a")
    assert [r["p50_ms"] for r in bench["rows"]] == [15.9, 13.8] and bench["environment"]["threads"] == 2
    with store.recording("evaluate", {}, {}) as run:  # and it takes new runs in the new layout
        run.add_row({"variant": "torch", "status": "ok"})
    assert store.get(run.id)["pid"] == os.getpid()
    RunStore(path)  # opening a migrated store again changes nothing
    assert store.schema_version == SCHEMA_VERSION and len(store.runs()) == 3


def test_stores_it_cannot_use_are_one_clear_error(tmp_path):
    newer = tmp_path / "newer.sqlite"
    RunStore(newer)
    with sqlite3.connect(newer) as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(UsageProblem, match="newer hfmagic .store schema 99.*upgrade hfmagic"):
        RunStore(newer)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(UsageProblem, match="is damaged .file is not a database.*repair"):
        RunStore(junk)
    assert junk.read_bytes().startswith(b"not a database")  # left as it was


def test_run_states_and_id_suffixes(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    live = store.start("benchmark", {}, {})  # this process: alive, so still running
    with pytest.raises(KeyError):
        with store.recording("evaluate", {}, {}) as failed:
            raise KeyError("boom")
    reused = store.start("export", {}, {})
    with store.connect() as con:  # same pid, another process start time: the pid was reused
        con.execute("UPDATE runs SET proc_start = proc_start + 1 WHERE id = ?", (reused.id,))
    status = {r["id"]: r["status"] for r in store.runs()}
    assert status == {live.id: "running", failed.id: "failed", reused.id: "interrupted"}
    assert store.get(failed.id)["summary"] == {"error": "KeyError: 'boom'"}

    assert store.resolve(live.id[-6:]) == live.id
    with pytest.raises(UsageProblem, match="no run 'nope'"):
        store.resolve("nope")
    with pytest.raises(UsageProblem, match="is the end of 3 run ids"):
        store.resolve("")  # the empty suffix ends every id
    with pytest.raises(UsageProblem, match="no run"):
        store.resolve("_" * 6)  # LIKE wildcards are taken literally
