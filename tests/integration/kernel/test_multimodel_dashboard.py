"""Several models in one dashboard and one report, through a real shell: two tiny models (a BERT and a
DistilBERT) joined by model and variant, evaluations of different data flagged."""

import json
import re

import pytest

from hfmagic.ui.rows import pareto_front, row_id
from hfmagic.ui.widget import Dashboard, DashboardError
from tests.support.fast import TWO_MODELS_SWEEP as FAST
from tests.support.tiny import frame


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
