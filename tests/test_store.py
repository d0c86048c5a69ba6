"""The run store and environment card: nothing lost (real processes, SIGKILL, two writers, an old
layout migrated), runs/compare/rerun through the shell and the command line."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from hfmagic.core.errors import UsageProblem
from hfmagic.store.db import SCHEMA_VERSION, RunStore
from tests.support.cli import cli
from tests.support.store import FIXTURES, record


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


def test_environment_card(tmp_path):
    import importlib.metadata as md

    code = ("import sys, json; from hfmagic.core.envcard import environment_card; card = environment_card(); "
            "print(json.dumps(card)); print('torch' in sys.modules)")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f.txt").write_text("one")
    subprocess.run(git + ["-C", str(repo), "add", "f.txt"], check=True)
    subprocess.run(git + ["-C", str(repo), "commit", "-qm", "c"], check=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()

    def card_in(folder):
        out = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True,
                             check=True, env={**os.environ, "OMP_NUM_THREADS": "3"}).stdout.splitlines()
        assert out[1] == "False"  # the card reads torch's state only when torch is already imported
        return json.loads(out[0])

    clean = card_in(repo)
    assert clean["git"]["commit"] == head and clean["git"]["dirty"] is False
    (repo / "f.txt").write_text("two")
    assert card_in(repo)["git"]["dirty"] is True
    card = card_in(tmp_path)
    assert card["git"]["commit"] == "not a git repository" and card["cwd"] == str(tmp_path)
    assert card["packages"]["onnxruntime"] == md.version("onnxruntime")
    assert card["packages"]["transformers"] == md.version("transformers")
    assert "CPUExecutionProvider" in card["onnxruntime_providers"]
    assert card["python"] == sys.version.split()[0] and card["logical_cpus"] == os.cpu_count()
    assert card["threads"]["OMP_NUM_THREADS"] == "3" and card["threads"]["resolved"] >= 1
    assert card["cpu"] and isinstance(card["gpus"], list) and card["os"]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and " avx2" in cpuinfo.read_text():
        assert "avx2" in card["cpu_flags"]


def bench_row(variant, backend, p50, speedup, batch=1):
    return {"variant": variant, "backend": backend, "batch_size": batch, "seq_len": 128, "status": "ok",
            "p50_ms": p50, "samples_per_s": 1000 / p50, "speedup": speedup}


def test_runs_and_compare_in_the_shell(shell, store_in_shell):
    store = store_in_shell
    a = record(store, "benchmark", {"batch_sizes": [1], "threads": 2},
               [bench_row("torch", "torch", 10.0, 1.0), bench_row("int8", "onnxruntime", 5.0, 2.0)])
    b = record(store, "benchmark", {"batch_sizes": [1, 8], "threads": 1},
               [bench_row("torch", "torch", 12.5, 1.0), bench_row("int8", "onnxruntime", 4.0, 3.125),
                bench_row("int8", "onnxruntime", 20.0, 3.0, batch=8)],
               env_change={"cpu": "Another CPU", "packages": {"onnxruntime": "9.9.9"}})
    e = record(store, "evaluate", {"metrics": ["accuracy"], "reference": "torch"},
               [{"variant": "torch", "status": "ok", "accuracy": 0.95},
                {"variant": "int8", "status": "ok", "accuracy": 0.94, "pct_of_reference": 98.9, "gate": "fail"},
                {"variant": "O2", "status": "BuildError: no"}])

    table = shell.run_line_magic("hfmagic", "runs")
    assert [r["id"] for r in table.rows] == [e, b, a]
    text = str(table)
    assert "best int8/onnxruntime b1 s128: 3.12x vs torch/torch, p50 4.00 ms" in text
    assert "best int8/onnxruntime b1 s128: 2.00x vs torch/torch, p50 5.00 ms" in text
    assert "accuracy 0.9500 (torch); lowest int8 98.90%; gate 0/1 pass; 1 failed" in text  # as the table writes it
    assert [r["rows"] for r in table.rows] == [3, 3, 2] and {r["model"] for r in table.rows} == {"tiny"}
    assert len(shell.run_line_magic("hfmagic", "runs --kind evaluate").rows) == 1

    cmp = shell.run_line_magic("hfmagic", f"compare {a[-6:]} {b[-6:]}")
    diffs = {(d["what"], d["key"]): (d["a"], d["b"]) for d in cmp.differences.rows}
    assert diffs[("params", "threads")] == ("2", "1") and diffs[("params", "batch_sizes")] == ("[1]", "[1, 8]")
    assert diffs[("environment", "cpu")][1] == "Another CPU"
    assert diffs[("environment", "packages.onnxruntime")][1] == "9.9.9"
    assert ("environment", "python") not in diffs  # what is the same is not listed
    figs = {(f["config"], f["figure"]): f for f in cmp.figures.rows}
    assert figs[("torch/torch b1 s128", "p50_ms")]["change"] == pytest.approx(25.0)
    assert figs[("int8/onnxruntime b1 s128", "p50_ms")]["change"] == pytest.approx(-20.0)
    assert figs[("int8/onnxruntime b1 s128", "speedup")]["a"] == "2.00x"
    assert figs[("int8/onnxruntime b8 s128", "-")]["note"] == "only in B"
    html = cmp._repr_html_()
    assert "Another CPU" in html and "+25.0" in html and "-20.0" in str(cmp)

    with pytest.raises(UsageError, match="a benchmark run and .* a evaluate run"):
        shell.run_line_magic("hfmagic", f"compare {a} {e}")
    with pytest.raises(UsageError, match="no run 'zzz'"):
        shell.run_line_magic("hfmagic", "compare zzz " + a)


def test_runs_and_compare_on_the_command_line(tmp_path):
    env = {**os.environ, "HFMAGIC_CACHE_DIR": str(tmp_path)}
    store = RunStore(tmp_path / "runs.sqlite")
    a = record(store, "export", {"levels": ["fp32"]},
               [{"variant": "torch", "status": "ok", "size_mb": 0.9}, {"variant": "fp32", "status": "ok", "size_mb": 0.8}])
    b = record(store, "export", {"levels": ["fp32", "O2"]},
               [{"variant": "torch", "status": "ok", "size_mb": 0.9}, {"variant": "fp32", "status": "ok", "size_mb": 0.4}])

    listed = cli("runs", env=env)
    assert listed.returncode == 0 and a in listed.stdout and b in listed.stdout
    assert "2 variants; smallest fp32 0.4 MB" in listed.stdout
    compared = cli("compare", a, b[-6:], env=env)
    assert compared.returncode == 0
    line = next(ln for ln in compared.stdout.splitlines() if ln.startswith("fp32") and "size_mb" in ln)
    assert line.split()[2:5] == ["0.8", "0.4", "-50.0"]
    bad = cli("rerun", "nosuchrun", env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("hfmagic: no run 'nosuchrun'")


# -- rerun, for real ---------------------------------------------------------------------------------
def test_rerun_repeats_an_evaluation_and_refuses_an_in_memory_dataframe(shell, store_in_shell, tiny_bert,
                                                                       tmp_path):
    import pandas as pd

    from tests.support.tiny import LABELS, sentences

    frame = pd.DataFrame({"text": sentences(24, seed=3), "label": [LABELS[i % 3] for i in range(24)]})
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    shell.user_ns["frame"] = frame
    shell.run_line_magic("load_model", f"{tiny_bert} --name rr -q")
    first = shell.run_line_magic("evaluate", f"rr --data {csv} --variants torch --no-widget -o -q")
    again = shell.run_line_magic("hfmagic", f"rerun {first.run_id[-6:]} -q")
    assert again.run_id and again.run_id != first.run_id
    a, b = store_in_shell.get(first.run_id), store_in_shell.get(again.run_id)
    assert b["params"] == a["params"] and b["provenance"]["rerun_of"] == a["id"]
    assert b["provenance"]["dataset"]["sha256"] == a["provenance"]["dataset"]["sha256"]
    assert b["provenance"]["model"]["weights_sha256"] == a["provenance"]["model"]["weights_sha256"]
    assert [r["accuracy"] for r in b["rows"]] == [r["accuracy"] for r in a["rows"]]
    assert any(f"rerun of {a['id']}" in n for n in again.notes)

    import datasets

    datasets.DatasetDict(train=datasets.Dataset.from_pandas(frame[:12]),
                         test=datasets.Dataset.from_pandas(frame[12:])).save_to_disk(tmp_path / "saved")
    split = shell.run_line_magic("evaluate", f"rr --data {tmp_path / 'saved'} --split train --metrics f1 "
                                             "--variants torch --no-widget -o -q")
    assert split.data_source == f"{tmp_path / 'saved'} [train]"
    again = shell.run_line_magic("hfmagic", f"rerun {split.run_id} -q")  # the folder, not "saved [train]"
    assert again.rows[0]["f1_macro"] == split.rows[0]["f1_macro"] and again.rows[0]["n"] == 12
    listing = str(shell.run_line_magic("hfmagic", "runs --limit 1"))
    assert f"f1_macro {split.rows[0]['f1_macro']:.4f}" in listing  # the metric asked for as f1
    assert "f1_macro" in str(shell.run_line_magic("hfmagic", f"compare {split.run_id} {again.run_id}"))

    mem = shell.run_line_magic("evaluate", "rr --data frame --variants torch --no-widget -o -q")
    with pytest.raises(UsageError, match="object in memory .*cannot be rerun; save it to a file"):
        shell.run_line_magic("hfmagic", f"rerun {mem.run_id}")


def test_rerun_says_when_its_files_are_not_the_recorded_ones(shell, store_in_shell, tiny_bert):
    shell.run_line_magic("load_model", f"{tiny_bert} --name rf -q")
    first = shell.run_line_magic("export_onnx", "rf --levels fp32 --quantize none -o -q")
    same = shell.run_line_magic("hfmagic", f"rerun {first.run_id} -q")
    assert not any("differ from run" in n for n in same.notes)  # the cache gave the very same file
    store_in_shell.annotate(first.run_id, files={"fp32": "0" * 64})  # as if fp32 had been another graph
    again = shell.run_line_magic("hfmagic", f"rerun {first.run_id} -q")
    assert f"the files of fp32 differ from run {first.run_id}'s (sha256): the figures are of different " \
           "graphs" in again.notes


def test_report_is_one_offline_page_with_dashboard_environment_and_rebuild_commands(shell, store_in_shell, tmp_path):
    import re

    store = store_in_shell
    sha = {"fp32": "1" * 64, "int8": "2" * 64}
    cli = {"fp32": "optimum-cli export onnx --model /m --task text-classification onnx/fp32",
           "int8": "optimum-cli onnxruntime quantize --onnx_model onnx/fp32 --avx2 --per_channel -o onnx/int8"}
    record(store, "export", {"levels": ["fp32"]},
           [{"variant": v, "status": "ok", "size_mb": s, "sha256": sha[v], "cli": cli[v]}
            for v, s in (("fp32", 0.8), ("int8", 0.3))])
    prov = {"model": {"name": "tiny", "source": "/m"}, "files": {"fp32": sha["fp32"], "int8": sha["int8"], "O3": "9" * 64}}
    bench = record(store, "benchmark", {}, [bench_row("torch", "torch", 10.0, 1.0), bench_row("int8", "onnxruntime", 4.0, 2.5),
                                            bench_row("O3", "onnxruntime", 9.0, 1.1), bench_row("int8", "onnxruntime", 30.0, 2.0, batch=8)],
                   provenance=prov)
    ev = record(store, "evaluate", {"reference": "torch"},
                [{"variant": "torch", "status": "ok", "accuracy": 0.9, "accuracy_low": 0.8, "accuracy_high": 0.95,
                  "f1_macro": 0.5, "f1_macro_low": 0.4, "f1_macro_high": 0.6},
                 {"variant": "int8", "status": "ok", "accuracy": 0.891, "accuracy_low": 0.8, "accuracy_high": 0.95,
                  "f1_macro": 0.45, "f1_macro_low": 0.4, "f1_macro_high": 0.6, "pct_of_reference": 99.0, "gate": "pass"}],
                env_change={"cpu": "Report CPU 9000"}, provenance=prov)
    out = tmp_path / "sub" / "report.html"
    report = shell.run_line_magic("hfmagic", f"report {bench[-6:]} {ev[-6:]} --html {out}")
    assert report.path == out and out.exists()
    page = out.read_text()
    rebuild = page.split("rebuild each variant with optimum-cli")[1].split("</table>")[0]
    assert cli["int8"] in rebuild and "PyTorch eager" in rebuild
    assert f"no recorded export built this file (sha256 {'9' * 12}" in rebuild
    assert "Report CPU 9000" in page and f"environment of {bench}" in page and f"environment of {ev}" in page
    state = json.loads(re.search(r'id="hfmagic-state">(.*?)</script>', page, re.S).group(1))
    by_id = {r["id"]: r for r in state["rows"]}
    assert by_id["tiny/int8/onnxruntime/1x128"]["p50_ms"] == 4.0 and by_id["tiny/int8/onnxruntime/8x128"]["p50_ms"] == 30.0
    assert by_id["tiny/int8/onnxruntime/1x128"]["metric"] == 0.891  # accuracy: the metric pct_of_reference is of
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//|@import|<link', page)  # nothing fetched
    summary = {r["variant"]: r for r in report.summary.rows}
    assert summary["int8"]["p50_ms"] == 4.0 and summary["int8"]["gate"] == "pass" and summary["int8"]["metric"] == 0.891
    assert f"report of 2 runs written to {out}" in str(report)
    with pytest.raises(UsageError, match="no run 'missing'"):
        shell.run_line_magic("hfmagic", f"report {bench} missing --html {tmp_path / 'no.html'}")
    assert not (tmp_path / "no.html").exists()
