"""--cluster when something is wrong: an address that answers but is not Ray (one line, at once,
none of Ray's own warnings), and a node whose probe fails (named, with why, in the notes, the rows
and the run's provenance; never dropped without a word). A real Ray cluster on 127.0.0.1
(hfmagic.cluster.local), as tests/integration/cluster/test_cluster.py starts it; no mock of Ray."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest
from IPython.core.error import UsageError

import hfmagic
from tests.support.fast import CLUSTER_SWEEP_LINE as FAST

pytest.importorskip("ray")


@pytest.fixture
def not_ray():
    """A TCP server on 127.0.0.1 that answers every connection with an HTTP error and closes it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            try:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_an_address_that_answers_but_is_not_ray_is_one_line_at_once(tiny_bert, not_ray):
    """Ray itself retries such an address for minutes, printing its GCS client's warnings; the
    timeout here only bounds that hang."""
    out = subprocess.run([sys.executable, "-m", "hfmagic", "benchmark", str(tiny_bert), "--variants", "torch",
                          "--cluster", not_ray, *FAST.split()], capture_output=True, text=True, timeout=90)
    assert out.returncode != 0
    err = out.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"hfmagic: {not_ray} answers but is not a Ray cluster") and "HOST:6379" in err
    assert "rpc_client" not in out.stdout + out.stderr and "gcs_client" not in out.stdout + out.stderr


@pytest.fixture(scope="module")
def half_broken(tmp_path_factory):
    """Two nodes: kind_a (the head) can run hfmagic; kind_b's onnxruntime is broken (an import that
    raises, first on its PYTHONPATH), so its probe fails there, as a node with a bad install does."""
    from hfmagic.cluster.local import LocalCluster

    broken = tmp_path_factory.mktemp("broken-site") / "onnxruntime"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise RuntimeError('onnxruntime is broken on this node')\n")
    path = os.pathsep.join([str(broken.parent), os.environ.get("PYTHONPATH", "")])
    lc = LocalCluster([{"kind_a": 1}, {"kind_b": 1}], cpus=1, folder=tmp_path_factory.mktemp("ray"),
                      env=[{}, {"PYTHONPATH": path}])
    lc.start()
    yield lc
    lc.stop()


def test_on_each_names_the_node_it_left_out_and_why(shell, tiny_bert, half_broken):
    from hfmagic.store.db import default_store

    shell.user_ns["tb"] = hfmagic.load_model(tiny_bert, name="tb")
    result = shell.run_line_magic("benchmark", f"tb --variants torch --cluster {half_broken.address} --on each "
                                               f"{FAST} --no-widget -o -q")
    by_node = {r["node"]: r for r in result.rows}
    assert set(by_node) == {"kind_a", "kind_b"}
    assert by_node["kind_a"]["status"] == "ok"
    skipped = by_node["kind_b"]["status"]
    assert skipped.startswith("skipped: node left out: its probe failed") and "onnxruntime is broken" in skipped
    assert by_node["kind_b"]["node_id"] and by_node["kind_b"]["hardware"].startswith("unknown")
    [note] = [n for n in result.notes if "was left out" in n]
    assert note.startswith("cluster: node kind_b (") and "onnxruntime is broken on this node" in note
    run = default_store().get(result.run_id)
    [(node_id, left)] = run["provenance"]["nodes_left_out"].items()
    assert left["resources"] == ["kind_b"] and "onnxruntime is broken" in left["why"]
    assert {r["node"]: r["status"] for r in run["rows"]}["kind_b"] == skipped

    with pytest.raises(UsageError) as err:  # the only node with kind_b: said, not "no node has it"
        shell.run_line_magic("benchmark", f"tb --variants torch --cluster {half_broken.address} --on kind_b:1 "
                                          f"{FAST} -q")
    line = str(err.value)
    assert line.startswith("the nodes that have kind_b:1 cannot run hfmagic's workers: node kind_b (")
    assert "onnxruntime is broken on this node" in line and "\n" not in line

    # an evaluation's shards avoid the node left out, and the notes say which and why
    import pandas as pd

    from tests.support.tiny import LABELS, sentences

    texts = sentences(24, seed=4)
    shell.user_ns["tb_df"] = pd.DataFrame({"text": texts, "label": [LABELS[i % 3] for i in range(24)]})
    shell.run_line_magic("config", "HFMagic.threads = 1")  # a node offers Ray one CPU here
    try:
        ev = shell.run_line_magic("evaluate", f"tb --data tb_df --variants torch --cluster {half_broken.address} "
                                              "--no-widget -o -q")
    finally:
        shell.run_line_magic("config", "HFMagic.threads = 0")
    assert ev.rows[0]["status"] == "ok"
    [note] = [n for n in ev.notes if "was left out" in n]
    assert note.startswith("cluster: node kind_b (") and note.endswith("the shards ran on the other nodes")
