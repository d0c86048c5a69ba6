"""%optimize through a real shell on a tiny classifier: every stage, the gate, the trace, the recipe
that rebuilds the winner's file byte for byte, NNCF, the run store, bad input in one line, and a
Jupyter kernel's trace then dashboard."""

import subprocess
import sys

import pytest


def cell(shell, code: str, name: str):
    """Run ``code`` in the shell, which must succeed, and return the variable it bound to ``name``."""
    res = shell.run_cell(code, store_history=False)
    assert res.success, res.error_in_exec
    return shell.user_ns[name]


@pytest.mark.slow
def test_optimize_finds_a_winner_that_keeps_the_accuracy_and_says_why_others_lost(shell, tiny_clf, tmp_path):
    from hfmagic.export.api import export_onnx
    from hfmagic.store.db import default_store

    folder, frame = tiny_clf
    shell.user_ns.update(opt_reviews=frame)
    shell.run_line_magic("load_model", f"{folder} --name opt_clf -q")
    opt = cell(shell, "%optimize opt_clf --data opt_reviews --backends onnxruntime,torch --threads 1,2 "
                         "--min-time 0.1 -q --name opt", "opt")
    stages = {t["stage"] for t in opt.trace}
    assert {"gate", "confirm"} <= stages
    assert all(t["reason"] for t in opt.trace if t["outcome"] == "dropped")  # every drop says why
    built = {t["candidate"].split("/")[0] for t in opt.trace}
    assert {"O1", "O2", "int8", "int8-per-tensor"} & built
    # NNCF's static int8 was built (and screened, or dropped with its reason); fp16/bf16 is said, not skipped
    assert "int8-nncf" in built and "fp16/bf16" in {t["candidate"] for t in opt.trace}
    # both thread counts screened, one kept, and the recipe says which
    threads = {t["candidate"]: t["outcome"] for t in opt.trace if t["candidate"].startswith("threads=")}
    assert set(threads) == {"threads=1", "threads=2"} and sorted(threads.values()) == ["dropped", "kept"]
    kept = int(next(c for c, o in threads.items() if o == "kept").split("=")[1])
    assert opt.recipe["threads"] == kept and f"at {kept} threads" in opt.recipe["python"]
    w = opt.winner
    assert w is not None and w["pct"] >= 99 and w["variant"] != "torch"
    confirmed = [t for t in opt.trace if t["stage"] == "confirm" and t["outcome"] == "measured"
                 and t["pct"] is not None and t["pct"] >= 99]
    assert w["objective"] == min(t["objective"] for t in confirmed)  # the fastest that keeps the accuracy
    assert opt.front and opt.front[0]["objective"] <= w["objective"]
    fixed = opt.against_fixed  # the best fixed recipe that kept the accuracy, from the same sweep
    assert fixed is None or fixed["ratio"] == pytest.approx(fixed["objective"] / w["objective"])
    # the recipe rebuilds the winner's file, byte for byte, in a folder of its own
    again = export_onnx(opt_handle := shell.user_ns["opt_clf"], output=tmp_path / "rebuilt", force=True,
                        progress=False, **{k: (frame if v == "DATA" else v) for k, v in opt.recipe["export_onnx"].items()})
    name = {"int8-per-tensor": "int8"}.get(w["variant"], w["variant"].split("-static")[0] + (
        "-static" if "-static" in w["variant"] else ""))
    assert again[name].sha256 == opt.recipe["sha256"], (opt.recipe, again[name].sha256)
    assert opt_handle.name == "opt_clf"
    run = default_store().get(opt.run_id)
    assert run["kind"] == "optimize" and len(run["rows"]) == len(opt.trace)
    assert run["summary"]["winner"]["candidate"] == w["candidate"]
    assert "winner:" in str(opt) and "rebuild:" in str(opt)
    dash = opt.dashboard()  # the confirming sweep joined with the gate's accuracy: the chart's Pareto front
    joined = {(r["variant"], r["backend"]): r for r in dash.rows}
    assert joined[(w["variant"], w["backend"])]["metric"] == pytest.approx(w["metric"])


def test_bad_optimize_input_is_one_line(shell, tiny_clf, capsys):
    from IPython.core.error import UsageError

    folder, _ = tiny_clf
    shell.run_line_magic("load_model", f"{folder} --name opt_bad -q")
    for line, said in [("--keep 150", "--keep must be a percentage above 0 and at most 100"),
                       ("--keep lots", "--keep takes a percentage"),
                       ("--shape 1by8", "--shape takes BATCHxSIZE"),
                       ("--objective tpot", "--objective tpot is a text-generation model's"),
                       ("--budget -1", "--budget must be a positive number"),
                       ("--threads 0,2", "--threads takes positive whole numbers")]:
        with pytest.raises(UsageError) as err:
            shell.run_line_magic("optimize", f"opt_bad {line}")
        assert said in str(err.value) and "\n" not in str(err.value), str(err.value)
    done = subprocess.run([sys.executable, "-m", "hfmagic", "optimize", str(folder), "--keep", "0"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("hfmagic: --keep must be"), done.stderr


def test_nncf_builds_a_qdq_file_rebuilt_to_the_same_bytes_and_openvino_scores_onnx(shell, tiny_clf, tmp_path):
    """--quantize nncf on the tiny classifier: NNCF's static int8 of the fp32 graph
    (QuantizeLinear/DequantizeLinear pairs), validated against PyTorch (its figures kept); the
    command line rebuilds the same bytes and NNCF writes nothing to the home folder; %evaluate
    --backend openvino runs the ONNX files on OpenVINO and each row says so."""
    import json
    import os

    import onnx

    pytest.importorskip("nncf")
    pytest.importorskip("openvino")
    folder, frame = tiny_clf
    frame.to_csv(tmp_path / "texts.csv", index=False)
    shell.user_ns.update(nncf_texts=frame)
    shell.run_line_magic("load_model", f"{folder} --name nncf_clf -q")
    variants = cell(shell, "%export_onnx nncf_clf --levels fp32 --quantize nncf --calibration nncf_texts --samples 32 "
                         "-q --name nncf_onnx", "nncf_onnx")
    assert [v.name for v in variants] == ["torch", "fp32", "int8-nncf"]
    q = variants["int8-nncf"]
    assert q.path.is_file() and "NNCF" in q.quantization and 0 <= q.validation["argmax_agreement"] <= 1
    ops = [n.op_type for n in onnx.load(str(q.path)).graph.node]
    assert ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run([sys.executable, "-m", "hfmagic", "export", str(folder), "--levels", "fp32", "--quantize",
                           "nncf", "--calibration", str(tmp_path / "texts.csv"), "--samples", "32", "--force",
                           "--output", str(tmp_path / "cli")], capture_output=True, text=True,
                          env={**os.environ, "HOME": str(home)}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "cli" / "int8-nncf" / "hfmagic-variant.json").read_text())["sha256"] == q.sha256
    assert list(home.iterdir()) == [], list(home.rglob("*"))
    ev = cell(shell, "%evaluate nncf_onnx --data nncf_texts --variants torch,fp32 --backend openvino --no-widget "
                     "-q --name nncf_ev", "nncf_ev")
    rows = {r["variant"]: r for r in ev.rows}
    assert rows["fp32"]["backend"] == "openvino" and rows["fp32"]["status"] == "ok" and "backend" not in rows["torch"]
    assert rows["fp32"]["accuracy"] == rows["torch"]["accuracy"]


@pytest.mark.slow
def test_nncf_keeps_demo_smalls_outputs_and_openvino_scores_it(shell, demo_small_folder):
    """On the real demo-small classifier NNCF's int8 validates (worst-text cosine above 0.99; onnxruntime's
    MinMax static int8 gives 0.69 there) and OpenVINO scores the file on its own int8 arithmetic."""
    pytest.importorskip("nncf")
    pytest.importorskip("openvino")
    shell.run_line_magic("load_model", "demo-small --name nncf_small -q")  # with its held-out split
    variants = cell(shell, "%export_onnx nncf_small --levels fp32 --quantize nncf --samples 32 -q --name nncf_small_onnx",
                    "nncf_small_onnx")
    q = variants["int8-nncf"]
    assert q.ok, q.error
    assert q.validation["cosine"] > 0.99 and q.size_bytes < variants["fp32"].size_bytes / 3
    ev = cell(shell, "%evaluate nncf_small_onnx --limit 64 --backend openvino --no-widget -q --name nncf_small_ev",
              "nncf_small_ev")
    rows = {r["variant"]: r for r in ev.rows}
    assert rows["int8-nncf"]["backend"] == "openvino" and rows["int8-nncf"]["status"] == "ok"
    assert rows["fp32"]["accuracy"] == rows["torch"]["accuracy"] and rows["int8-nncf"]["accuracy"] > 0.8

@pytest.mark.slow
def test_in_a_jupyter_kernel_it_shows_the_trace_then_the_dashboard(tiny_clf, tmp_path):
    """A real kernel (nbclient): %optimize displays its trace table, then the dashboard widget of the
    configurations it confirmed."""
    import nbformat
    from nbclient import NotebookClient

    folder, frame = tiny_clf
    frame.to_csv(tmp_path / "texts.csv", index=False)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in (
        "%load_ext hfmagic",
        f"%load_model {folder} --name clf -q",
        "%optimize clf --data texts.csv --backends onnxruntime,torch --threads 1 --min-time 0.05")])
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = [o for o in nb.cells[-1].outputs if o.get("output_type") == "display_data"]
    kinds = [("widget" if "application/vnd.jupyter.widget-view+json" in o["data"] else
              "trace" if o["data"].get("text/plain", "").startswith("optimize clf") else "other") for o in shown]
    assert kinds[-2:] == ["trace", "widget"], [o["data"].get("text/plain", "")[:80] for o in shown]
    assert "winner:" in shown[-2]["data"]["text/plain"] and "<table" in shown[-2]["data"]["text/html"]
