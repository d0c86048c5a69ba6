"""A real two-node Ray cluster on 127.0.0.1 (hfmagic.cluster.local): placement, --on each, files sent
once per node, a node killed mid-sweep, Ctrl-C, sharded evaluation equal to a single-process run.
No mock of Ray anywhere."""

import os
import random
import subprocess
import time

import pytest

from tests.support.fast import CLUSTER_SWEEP as FAST
from tests.support.tiny import LABELS, onnx_file, sentences, varied_classifier

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two nodes of one CPU each (kind_a, the head, and kind_b), each with its own node cache."""
    from hfmagic.cluster.local import LocalCluster

    folder = tmp_path_factory.mktemp("ray")
    lc = LocalCluster([{"kind_a": 1}, {"kind_b": 1}], cpus=1, folder=folder)
    lc.start()
    yield lc
    lc.stop()
    # nothing of the cluster stays behind: no process names its folder
    end = time.monotonic() + 20
    while time.monotonic() < end and _processes(str(folder)):
        time.sleep(0.5)
    assert not _processes(str(folder)), _processes(str(folder))


def _processes(text: str) -> list[str]:
    """'PID command line' of every process whose command line holds ``text`` (zombies: <defunct>)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "name", "status"]):
        line = " ".join(proc.info["cmdline"] or [proc.info["name"] or ""])
        if text in line and proc.info["pid"] != os.getpid():
            found.append(f"{proc.info['pid']} {line}" + (" <defunct>" if proc.info["status"] == "zombie" else ""))
    return found


def _workers(wait: float = 15.0) -> list[str]:
    """hfmagic's Ray actors still running on this machine (their processes are titled ray::_Worker),
    once ``wait`` seconds passed for them to exit (ray.kill is asynchronous)."""
    end = time.monotonic() + wait
    while True:
        found = [p for p in _processes("ray::_Worker") if "<defunct>" not in p]
        if not found or time.monotonic() > end:
            return found
        time.sleep(0.5)


@pytest.fixture(scope="module")
def variants(tiny_bert):
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model

    handle = load_model(tiny_bert)
    return export_onnx(handle, levels=["fp32"], quantize="dynamic", progress=False)


def test_on_each_runs_the_sweep_on_every_kind_of_node_and_sends_files_once(cluster, variants):
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.store.db import default_store

    result = benchmark(variants, variants=["torch", "fp32"], cluster=cluster.address, on="each", **FAST)
    rows = result.rows
    assert sorted({r["node"] for r in rows}) == ["kind_a", "kind_b"]
    assert all(r["status"] == "ok" for r in rows), [r["status"] for r in rows]
    for r in rows:  # where it ran, as that node said, and what its worker cost
        assert r["isolation"] == "ray actor" and r["host"] and "CPUs" in r["hardware"] and len(r["node_id"]) == 12
        assert r["startup_s"] > 0 and r["transfer_s"] >= 0
    for node in ("kind_a", "kind_b"):  # each node's speed-up is against its own torch row
        mine = [r for r in rows if r["node"] == node]
        assert [r["speedup"] for r in mine if r["variant"] == "torch"] == [1.0]
        assert all(r["sample_rounds"] for r in mine)
    ids = {r["node"]: r["node_id"] for r in rows}
    assert ids["kind_a"] != ids["kind_b"]
    sent = {(r["node"], r["variant"]): r["transfer_mb"] for r in rows}
    assert sent[("kind_a", "torch")] > 0 and sent[("kind_b", "torch")] > 0  # each node got the model once
    # the table names the node; the run store keeps every node's environment card
    assert "node" in str(result).splitlines()[1]
    run = default_store().get(result.run_id)
    assert set(run["provenance"]["nodes"]) == {"kind_a", "kind_b"}
    assert run["provenance"]["nodes"]["kind_b"]["environment"]["cpu"]
    assert {r["node"] for r in run["rows"]} == {"kind_a", "kind_b"}

    again = benchmark(variants, variants=["torch", "fp32"], cluster=cluster.address, on="kind_b:1", **FAST)
    assert {r["node"] for r in again.rows} == {"kind_b"}
    assert [r["transfer_mb"] for r in again.rows] == [0, 0]  # the same hashes: nothing sent again
    assert not _workers()


def test_ctrl_c_cancels_the_remote_workers(cluster, variants):
    """One configuration after another (--order sequential: the actor streams each shape's row), and
    Ctrl-C at the first row: the sweep returns what it had and no actor stays."""
    from hfmagic.benchmarking.api import benchmark

    def interrupt(event):
        if event["type"] == "row":
            raise KeyboardInterrupt

    result = benchmark(variants, variants=["torch", "fp32"], cluster=cluster.address, on="kind_a:1",
                       callback=interrupt, order="sequential", **{**FAST, "batch_sizes": [1, 2]})
    assert result.interrupted and result.rows[0]["status"] == "ok"
    assert [r["status"] for r in result.rows[1:]] == ["skipped: interrupted"] * 3
    assert any("interrupted" in n for n in result.notes)
    assert not _workers()


def test_sharded_evaluation_equals_a_single_process_run(cluster, tiny_bert, tmp_path):
    """Metrics, their intervals, the gate and every flip: the same numbers, exactly. One thread per
    shard, so each of the two one-CPU nodes runs one shard of each variant."""
    import pandas as pd

    from hfmagic.core.config import settings
    from hfmagic.evaluation.api import evaluate
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model
    from hfmagic.models.variants import Variant, Variants

    base = varied_classifier(tiny_bert, tmp_path / "clf")
    lossy = varied_classifier(tiny_bert, tmp_path / "lossy", noise=0.5)
    handle = load_model(base)
    exported = export_onnx(handle, levels=["fp32"], quantize="none", progress=False)
    vs = Variants(handle, list(exported) + [Variant("int8", handle, path=onnx_file(lossy, tmp_path / "lossy-onnx"))])
    rng = random.Random(3)
    texts = sentences(120, seed=5)
    frame = pd.DataFrame({"text": texts, "label": [rng.choice(LABELS) for _ in texts]})
    before = settings().threads
    settings().threads = 1
    try:
        here = evaluate(vs, frame, batch_size=16, progress=False)
        there = evaluate(vs, frame, batch_size=16, progress=False, cluster=cluster.address)
    finally:
        settings().threads = before
    assert [r["shards"] for r in there.rows] == [2, 2, 2]
    skip = {"seconds", "samples_per_s", "load_s", "shards", "nodes", "host"}
    for a, b in zip(here.rows, there.rows):
        assert {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}
    assert here.flip_rows == there.flip_rows and len(here.flip_rows) > 0


def test_bad_cluster_input_is_one_line(shell, tiny_bert, capsys):
    from IPython.core.error import UsageError

    shell.run_line_magic("load_model", f"{tiny_bert} --name cl_tiny -q")
    for line, said in [("--cluster 127.0.0.1:9", "no Ray cluster answers at 127.0.0.1:9"),
                       ("--cluster nowhere", "--cluster 'nowhere' is not an address"),
                       ("--on GPU:1", "--on places the workers on a Ray cluster's nodes; give --cluster"),
                       ("--cluster 127.0.0.1:9 --inline", "--inline measures in this process"),
                       ("--cluster 127.0.0.1:9 --on GPU:x:y", "--on 'GPU:x:y'")]:
        with pytest.raises(UsageError, match=None) as err:
            shell.run_line_magic("benchmark", f"cl_tiny --variants torch {line}")
        assert said in str(err.value) and "\n" not in str(err.value), str(err.value)
    with pytest.raises(UsageError) as err:
        shell.run_line_magic("evaluate", "cl_tiny --data x --cluster 127.0.0.1:9 --on each")
    assert "--on each compares hardware" in str(err.value)
    assert "cl_tiny" in shell.user_ns


def test_no_usage_stats_and_loopback_only(cluster):
    """Ray's usage statistics are off on every node, and the cluster listens on 127.0.0.1 only."""
    import re

    import psutil

    pids = set()
    for node in cluster.procs:  # each node's `ray start --block`, and what it started
        proc = psutil.Process(node.pid)
        pids |= {proc.pid} | {c.pid for c in proc.children(recursive=True)}
    out = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    mine = [line for line in out.splitlines() if {int(p) for p in re.findall(r"pid=(\d+)", line)} & pids]
    assert len(mine) >= 6, out  # the GCS, the raylets, their agents
    assert all(line.split()[3].startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for line in mine), mine
    assert os.environ.get("RAY_USAGE_STATS_ENABLED") == "0"


@pytest.mark.slow  # about a minute: a node's workers start, one dies, the sweep waits out Ray's detection
def test_a_node_killed_mid_sweep_costs_only_its_rows(cluster, variants):
    """kind_b is killed (SIGKILL to its raylet and workers) once its first round reported; kind_a's
    sweep completes. Runs last among the sweeps: the cluster has one node after it."""
    from hfmagic.benchmarking.api import benchmark

    killed = []

    def on_event(event):
        if event["type"] == "row" and event["row"].get("node") == "kind_b" and not killed:
            cluster.kill_node(1)
            killed.append(time.monotonic())

    result = benchmark(variants, variants=["torch", "fp32"], cluster=cluster.address, on="each",
                       callback=on_event, **{**FAST, "max_time": 30})
    assert killed
    by_node = {}
    for r in result.rows:
        by_node.setdefault(r["node"], []).append(r["status"])
    assert by_node["kind_a"] == ["ok", "ok"]
    assert all(s.startswith("lost: node died: kind_b") for s in by_node["kind_b"]), by_node["kind_b"]
    assert not _workers()


def test_the_report_gives_each_nodes_environment():
    """A cluster run's provenance keeps each node's card; the report shows one table per distinct one."""
    from hfmagic.runs.report import environment_tables

    here = {"cpu": "here", "python": "3.11"}
    run = {"id": "r1", "environment": here, "provenance": {"nodes": {
        "kind_a": {"host": "a", "environment": {"cpu": "EPYC", "python": "3.11"}},
        "kind_b": {"host": "b", "environment": {"cpu": "Xeon", "python": "3.11"}}}}}
    titles = [t.title for t in environment_tables([run])]
    assert titles == ["environment of r1", "environment of r1 on kind_a", "environment of r1 on kind_b"]
    text = str(environment_tables([run])[2])
    assert "Xeon" in text and "b" in text
