"""Several models in one dashboard and one report: real benchmarks and evaluations of two tiny
models (a BERT and a DistilBERT, different seeds), joined by model and variant, never by variant
name alone; the browser's rules (js/dashboard.js) checked against their Python twins on such rows."""

import csv
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hfmagic.ui.rows import pareto_front, row_id, speedup_cells
from hfmagic.ui.widget import Dashboard, DashboardError
from tests.support.fast import TWO_MODELS_SWEEP as FAST
from tests.support.tiny import frame

JS = Path(__file__).resolve().parent.parent / "js" / "dashboard.js"


def test_two_models_in_one_dashboard_keep_their_own_rows_and_accuracy(two, shell):
    shell_models = shell.user_ns
    (bench_a, ev_a), (bench_b, ev_b) = two["big"], two["small"]
    acc = {(name, r["variant"]): r["accuracy"] for name, (_, ev) in two.items() for r in ev.rows}
    assert acc[("big", "torch")] != acc[("small", "torch")]  # else a join by variant name would pass too
    dash = Dashboard(bench_a, ev_a, bench_b, ev_b)
    assert [r["id"] for r in dash.rows] == [
        "big/torch/torch/1x8", "big/fp32/onnxruntime/1x8", "small/torch/torch/1x8", "small/fp32/onnxruntime/1x8"]
    for r in dash.rows:
        result = bench_a if r["model"] == "big" else bench_b
        assert r["model_sha"] == result.weights_sha256[:12] and r["id"] == row_id(r)
        assert r["metric"] == acc[(r["model"], r["variant"])]
    assert [c["key"] for c in dash.columns][0] == "model" and "data_sha" not in [c["key"] for c in dash.columns]
    assert not any("replaced" in n for n in dash.notes) and dash.warnings == []
    # every row the results themselves hold names its model (the row's own or, until the rows carry
    # it, the result's), and the dashboard's rows agree
    for name, (bench, ev) in two.items():
        assert all(r.get("model", name) == name for r in bench.rows + ev.rows)

    # speed-up against one model's baseline: the rows of its own benchmark get the figure that
    # benchmark measured; the other model's rows were measured in another run, apart, so they get
    # none, and the dashboard says why (the ratio of two p50s taken minutes apart is no speed-up)
    dash.baseline = "small/torch/torch"
    cells = dash.speedups[dash.baseline]
    fp32 = next(r for r in bench_b.rows if r["variant"] == "fp32")
    assert cells["small/fp32/onnxruntime/1x8"]["value"] == fp32["speedup"]
    assert cells["small/fp32/onnxruntime/1x8"]["text"] in str(dash)
    assert cells["small/torch/torch/1x8"]["value"] == 1.0
    assert cells["big/fp32/onnxruntime/1x8"]["value"] is None
    assert cells["big/fp32/onnxruntime/1x8"]["why"].startswith("measured in another run than the baseline")
    assert "runs measured apart cannot be paired" in str(dash)
    # in one benchmark of both models, the other model's rows are paired with the baseline
    from hfmagic.benchmarking.api import benchmark

    both = benchmark([shell_models["big"], shell_models["small"]], baseline="small/torch", **FAST)
    joint = Dashboard(both)
    assert joint.baseline == "small/torch/torch"
    for r in both.rows:
        cell = joint.speedups[joint.baseline][row_id(r)]
        assert (cell["value"], cell["low"], cell["high"]) == (r["speedup"], r["speedup_low"], r["speedup_high"])
    # with two models "torch/torch" is ambiguous: one line naming the choices
    with pytest.raises(DashboardError, match=r"baseline 'torch/torch' names no measured row; choose one of "
                                             r"big/fp32/onnxruntime, big/torch/torch, small/"):
        dash.baseline = "torch/torch"
    assert dash.baseline == "small/torch/torch"
    # the Pareto front is over every model's points
    front = pareto_front([r for r in dash.rows if r["status"] == "ok"])
    assert front and set(front) <= {r["id"] for r in dash.rows}
    best = max(dash.rows, key=lambda r: (r["metric"], -r["p50_ms"]))
    fastest = min(dash.rows, key=lambda r: (r["p50_ms"], -r["metric"]))
    assert best["id"] in front and fastest["id"] in front


def test_one_model_takes_the_old_variant_backend_baseline(two):
    bench, ev = two["small"]
    dash = Dashboard(bench, ev, baseline="fp32/onnxruntime")
    assert dash.baseline == "small/fp32/onnxruntime"
    dash.set_state({"selected": ["small/fp32/onnxruntime/1x8"]})  # as the browser sends it
    assert [r["variant"] for r in dash.selected_rows] == ["fp32"]


def test_evaluations_of_different_data_are_flagged(shell, two):
    from hfmagic.evaluation.api import evaluate

    (bench_a, ev_a), (bench_b, _) = two["big"], two["small"]
    other = evaluate(shell.user_ns["small"], data=frame(9, n=30), variants=["torch"], progress=False)
    assert other.fingerprint["sha256"] != ev_a.fingerprint["sha256"]
    dash = Dashboard(bench_a, ev_a, bench_b, other)
    assert len(dash.warnings) == 1
    warning = dash.warnings[0]
    assert warning.startswith("evaluations of different data: big on ") and "small on " in warning
    assert ev_a.fingerprint["sha256"][:12] in warning and other.fingerprint["sha256"][:12] in warning
    assert "data_sha" in [c["key"] for c in dash.columns]
    assert str(dash).count("evaluations of different data") == 1  # the text table says it too


def test_csv_and_html_of_two_models(two, tmp_path):
    dash = Dashboard(*two["big"], *two["small"], baseline="big/torch/torch")
    with dash.to_csv(tmp_path / "d.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["variant"]) for r in rows] == [("big", "torch"), ("big", "fp32"), ("small", "torch"),
                                                          ("small", "fp32")]
    assert rows[2]["model_sha"] == two["small"][0].weights_sha256[:12]
    page = dash.to_html(tmp_path / "d.html").read_text()
    state = json.loads(page.split('id="hfmagic-state">')[1].split("</script>")[0])
    assert {r["model"] for r in state["rows"]} == {"big", "small"} and state["baseline"] == "big/torch/torch"


def test_report_of_two_models_runs_keeps_every_row(shell, two, tmp_path):
    """Two models' fp32 and torch: four rows in the report's dashboard and summary, none replaced."""
    ids = [two[m][k].run_id for m in ("big", "small") for k in (0, 1)]
    assert all(ids), "the runs were not recorded"
    out = tmp_path / "two.html"
    report = shell.run_line_magic("hfmagic", f"report {' '.join(ids)} --html {out}")
    page = out.read_text()
    state = json.loads(re.search(r'id="hfmagic-state">(.*?)</script>', page, re.S).group(1))
    assert sorted(r["id"] for r in state["rows"]) == [
        "big/fp32/onnxruntime/1x8", "big/torch/torch/1x8", "small/fp32/onnxruntime/1x8", "small/torch/torch/1x8"]
    assert not any("replaced" in n for n in state["notes"])
    acc = {(m, r["variant"]): r["accuracy"] for m in ("big", "small") for r in two[m][1].rows}
    assert all(r["metric"] == acc[(r["model"], r["variant"])] for r in state["rows"])
    summary = [(r["model"], r["variant"], r["metric"]) for r in report.summary.rows]
    assert summary == [("big", "torch", acc[("big", "torch")]), ("big", "fp32", acc[("big", "fp32")]),
                       ("small", "torch", acc[("small", "torch")]), ("small", "fp32", acc[("small", "fp32")])]
    assert report.summary.title == "summary per model and variant"
    assert "hfmagic report: big, small" in page


@pytest.mark.skipif(shutil.which("node") is None, reason="node is missing: `make browser` installs it")
def test_the_browser_applies_the_same_rules_across_models(tmp_path):
    """Rows of three models sharing variant names, two measured on two kinds of nodes: the ids are
    distinct, a speed-up is against the baseline measured on the row's own node, and
    js/dashboard.js's paretoFront (the one rule it applies itself) gives what pareto_front gives."""
    rng = random.Random(2)
    rows = []
    # model a was measured on two kinds of a cluster's nodes (--on each): a row's speed-up is against
    # the baseline measured on its own node
    for model, node in (("a", "kind_a"), ("a", "kind_b"), ("b", "local"), (None, None)):
        for variant, backend in (("torch", "torch"), ("fp32", "onnxruntime"), ("int8", "onnxruntime")):
            for batch in (1, 4):
                ok = rng.random() > 0.15
                rows.append({"model": model, "node": node, "variant": variant, "backend": backend, "batch_size": batch,
                             "seq_len": 16, "status": "ok" if ok else "failed: x",
                             "p50_ms": rng.uniform(1, 50) if ok else None,
                             "ttft_p50_ms": rng.uniform(50, 500) if ok else None,
                             "metric": rng.choice([None, round(rng.uniform(0.8, 0.95), 3)])})
        if node != "kind_b":
            rows.append({"model": model, "variant": "O4", "backend": None, "batch_size": None, "seq_len": None,
                         "status": "ok", "p50_ms": None, "metric": 0.9})
    for r in rows:
        r["id"] = row_id(r)
        r["sweep"] = "one"
        r["samples_ms"] = [r["p50_ms"]] * 3 if r["p50_ms"] is not None else None
    module = tmp_path / "dashboard.mjs"
    shutil.copy(JS, module)
    script = (f"import {{ paretoFront }} from {json.dumps(module.as_uri())};\n"
              "import { readFileSync } from 'node:fs';\n"
              "const rows = JSON.parse(readFileSync(0, 'utf8'));\n"
              "const ok = rows.filter((r) => r.status === 'ok' && r.batch_size === 1);\n"
              "console.log(JSON.stringify({p: paretoFront(ok), t: paretoFront(ok, true, 'ttft_p50_ms')}));")
    got = json.loads(subprocess.run(["node", "--input-type=module", "-e", script], input=json.dumps(rows),
                                    capture_output=True, text=True, timeout=60, check=True).stdout)
    assert len({r["id"] for r in rows}) == len(rows)
    # a row's speed-up is against the baseline measured on its own node (Python computes it)
    on_b, _ = speedup_cells([r for r in rows if r["batch_size"] is not None], "a/fp32/onnxruntime")
    for r in rows:
        base = next((x for x in rows if x["model"] == "a" and x["variant"] == "fp32" and x.get("node") == r.get("node")
                     and x["batch_size"] == r["batch_size"] and x["status"] == "ok"), None)
        if r.get("node") == "kind_b" and base and r["status"] == "ok":
            assert on_b[r["id"]]["value"] == pytest.approx(base["p50_ms"] / r["p50_ms"])
    front = pareto_front([r for r in rows if r["status"] == "ok" and r["batch_size"] == 1])
    assert got["p"] == front and {r["model"] for r in rows if r["id"] in front} - {None}
    # a generation's chart on TTFT with a lower-is-better metric (perplexity): the same rule both sides
    by_ttft = pareto_front([r for r in rows if r["status"] == "ok" and r["batch_size"] == 1], True, "ttft_p50_ms")
    assert got["t"] == by_ttft and by_ttft != front
