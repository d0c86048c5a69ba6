"""hfmagic.ui: the dashboard's rows, joins, baselines, the Pareto front (and js/dashboard.js's twin),
live rows, CSV and HTML, the table for frontends without widgets."""

import csv
import json
import random
import re
import shutil
import subprocess
import types

import pytest

from hfmagic.benchmarking.result import ROW_KEYS
from hfmagic.ui.rows import join, pareto_front
from hfmagic.ui.widget import Dashboard
from tests.support.paths import REPO

JS = REPO / "js" / "dashboard.js"


def bench_row(variant, backend, batch, p50, status="ok", seq=128, **extra):
    return {**dict.fromkeys(ROW_KEYS), "variant": variant, "backend": backend, "batch_size": batch,
            "seq_len": seq, "status": status,
            "p50_ms": p50 if status == "ok" else None, "p95_ms": p50 * 1.2 if status == "ok" else None,
            "samples_per_s": 1000 * batch / p50 if status == "ok" else None, "peak_mem_mb": 300.0,
            "size_mb": 90.0, "speedup_low": None, "speedup_high": None, "samples_ms": [p50] * 3, **extra}


def eval_row(variant, acc, pct, status="ok"):
    return {"variant": variant, "status": status, "n": 100, "accuracy": acc, "accuracy_low": acc - 0.02,
            "accuracy_high": acc + 0.02, "f1_macro": acc - 0.1, "f1_macro_low": 0.0, "f1_macro_high": 1.0,
            "pct_of_reference": pct, "gate": "pass" if pct >= 99 else "fail", "agreement": 0.97}


BENCH = [bench_row("torch", "torch", 1, 16.0), bench_row("torch", "torch", 8, 96.0),
         bench_row("fp32", "onnxruntime", 1, 14.0), bench_row("fp32", "onnxruntime", 8, 80.0),
         bench_row("int8", "onnxruntime", 1, 8.0), bench_row("int8", "onnxruntime", 8, 50.0),
         bench_row("O2", "onnxruntime", 1, 0.0, status="failed: RuntimeError: broken graph")]
EVAL = [eval_row("torch", 0.96, 100.0), eval_row("fp32", 0.96, 100.0), eval_row("int8", 0.94, 97.92),
        eval_row("O4", 0.95, 98.96)]


def fake_result(rows, **attrs):
    return types.SimpleNamespace(rows=rows, notes=attrs.pop("notes", []), **attrs)


def test_accuracy_shown_on_a_backend_evaluate_did_not_run_is_said_to_be_borrowed():
    evals = fake_result(EVAL, metrics=["accuracy"], reference="torch", title="eval")
    plain = Dashboard(fake_result(BENCH, title="bench"), evals)
    assert not any(n.startswith("accuracy on ") for n in plain.notes)
    openvino = bench_row("fp32", "openvino", 1, 12.0)
    dash = Dashboard(fake_result(BENCH + [openvino], title="bench"), evals)
    assert "accuracy on openvino rows is the variant's accuracy as evaluated on torch/onnxruntime, " \
           "not measured on that backend" in dash.notes


def test_join_puts_each_variants_accuracy_on_its_benchmark_rows():
    dash = Dashboard(fake_result(BENCH, title="bench"),
                     fake_result(EVAL, metrics=["accuracy", "f1_macro"], reference="torch", title="eval"))
    by_id = {r["id"]: r for r in dash.rows}
    assert list(by_id) == ["torch/torch/1x128", "torch/torch/8x128", "fp32/onnxruntime/1x128",
                           "fp32/onnxruntime/8x128", "int8/onnxruntime/1x128", "int8/onnxruntime/8x128",
                           "O2/onnxruntime/1x128", "O4/eval"]
    int8 = by_id["int8/onnxruntime/8x128"]
    assert (int8["metric"], int8["metric_low"], int8["p50_ms"]) == (0.94, 0.94 - 0.02, 50.0)
    assert int8["pct_of_reference"] == pytest.approx(97.92) and int8["gate"] == "fail"
    # the cells are written as the evaluation's table writes them: interval, % of reference, verdict
    assert (int8["cells"]["metric"], int8["cells"]["metric_ci"], int8["cells"]["pct_of_reference"],
            int8["cells"]["gate"]) == ("0.9400", "[0.9200, 0.9600]", "97.92%", "fail")
    assert by_id["torch/torch/1x128"]["gate"] == "reference"
    # a benchmarked variant nobody evaluated, and an evaluated variant nobody benchmarked, both stay
    assert by_id["O2/onnxruntime/1x128"]["metric"] is None
    assert by_id["O2/onnxruntime/1x128"]["status"].startswith("failed")
    assert by_id["O4/eval"]["backend"] is None and by_id["O4/eval"]["metric"] == 0.95
    # the first metric is the one shown, under its own name; raw samples stay on the Python side
    assert next(c for c in dash.columns if c["key"] == "metric")["title"] == "accuracy"
    assert all("samples_ms" not in r for r in dash.rows)
    assert dash.title == "bench + eval"


def test_a_failed_evaluation_shows_in_the_status():
    rows = join([bench_row("int8", "onnxruntime", 1, 8.0)], [{"variant": "int8", "status": "failed: boom"}])
    assert rows[0]["status"] == "evaluation failed: boom" and rows[0]["metric"] is None


def test_a_benchmark_result_names_its_own_baseline():
    rows = [dict(r) for r in BENCH]
    dash = Dashboard(fake_result(rows, title="bench", baseline="int8/onnxruntime"))
    assert dash.sweep_baseline == dash.baseline == "int8/onnxruntime"
    gone = Dashboard(fake_result(rows, title="bench", baseline="O2/onnxruntime"))  # it failed: no ok row
    assert gone.baseline == "torch/torch"


def value(dash, row_id, baseline=None):
    return dash.speedups[baseline or dash.baseline][row_id]["value"]


def test_baseline_recomputes_speedups_per_shape():
    dash = Dashboard(BENCH)
    assert dash.baseline == "torch/torch"  # the first ok variant/backend when the sweep names none
    assert value(dash, "int8/onnxruntime/1x128") == pytest.approx(16.0 / 8.0)
    assert value(dash, "int8/onnxruntime/8x128") == pytest.approx(96.0 / 50.0)
    assert value(dash, "torch/torch/8x128") == 1.0 and "O2/onnxruntime/1x128" not in dash.speedups[dash.baseline]
    dash.baseline = "fp32/onnxruntime"  # as the browser's selector sets it: Python computes its cells
    assert value(dash, "int8/onnxruntime/1x128") == pytest.approx(14.0 / 8.0)
    assert value(dash, "torch/torch/8x128") == pytest.approx(80.0 / 96.0)
    # a shape the baseline has no row for gets no speed-up, and says why
    extra = Dashboard(BENCH + [bench_row("fp32", "onnxruntime", 4, 40.0)])
    cell = extra.speedups["torch/torch"]["fp32/onnxruntime/4x128"]
    assert cell["value"] is None and cell["why"] == "torch/torch has no row at this shape"


def test_the_sweeps_own_baseline_is_the_default_and_its_interval_is_kept():
    rows = [dict(r) for r in BENCH]
    rows[2].update(speedup_low=1.0, speedup_high=1.0)  # fp32/onnxruntime 1x128 is the sweep's baseline
    rows[4].update(speedup_low=1.6, speedup_high=1.9)
    rows[4].update(speedup=1.75)
    dash = Dashboard(rows)
    assert dash.sweep_baseline == dash.baseline == "fp32/onnxruntime"
    cell = dash.speedups[dash.baseline]["int8/onnxruntime/1x128"]
    assert (cell["value"], cell["low"], cell["high"], cell["text"]) == (1.75, 1.6, 1.9, "1.75x [1.60, 1.90]")


def test_pareto_front():
    points = [{"id": "a", "p50_ms": 10, "metric": 0.90}, {"id": "b", "p50_ms": 5, "metric": 0.85},
              {"id": "c", "p50_ms": 12, "metric": 0.95}, {"id": "d", "p50_ms": 11, "metric": 0.89},
              {"id": "e", "p50_ms": 5, "metric": 0.80}, {"id": "f", "p50_ms": 20, "metric": 0.95},
              {"id": "g", "p50_ms": 3, "metric": None}]
    assert pareto_front(points) == ["b", "a", "c"]  # d is beaten by a, e by b, f ties c but is slower
    # perplexity: lower is better, so the fast point with the lowest value leads, then only lower ones
    assert pareto_front(points, lower_is_better=True) == ["e"]
    perplexity = [{"id": "t", "p50_ms": 40, "metric": 32.4}, {"id": "f", "p50_ms": 25, "metric": 32.4},
                  {"id": "i4", "p50_ms": 18, "metric": 39.5}, {"id": "i8", "p50_ms": 22, "metric": 54.0}]
    assert pareto_front(perplexity, lower_is_better=True) == ["i4", "f"]  # i8 is beaten by i4, t by f
    rates = [{**p, "tok_s": 1000 / p["p50_ms"]} for p in perplexity]  # tokens/s: more is better, the same front
    assert pareto_front(rates, lower_is_better=True, x="tok_s", higher_x=True) == ["i4", "f"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is missing: `make browser` installs it")
def test_the_browser_draws_the_same_pareto_front(tmp_path):
    """js/dashboard.js's paretoFront (the one rule it applies itself, on the rows in view) gives what
    pareto_front gives, on random rows."""
    rng = random.Random(0)
    rows = []
    for variant in ("torch", "fp32", "O2", "int8"):
        for batch in (1, 4, 8):
            status = "ok" if rng.random() > 0.15 else "failed: x"
            rows.append(bench_row(variant, "onnxruntime", batch, rng.uniform(1, 50), status=status,
                                  metric=rng.choice([None, round(rng.uniform(0.8, 0.95), 2)])))
    for r in rows:
        r["id"] = f"{r['variant']}/{r['backend']}/{r['batch_size']}x{r['seq_len']}"
    module = tmp_path / "dashboard.mjs"
    shutil.copy(JS, module)
    script = (f"import {{ paretoFront }} from {json.dumps(module.as_uri())};\n"
              "import { readFileSync } from 'node:fs';\n"
              "const rows = JSON.parse(readFileSync(0, 'utf8'));\n"
              "console.log(JSON.stringify({p: paretoFront(rows.filter((r) => r.status === 'ok')), "
              "q: paretoFront(rows.filter((r) => r.status === 'ok'), true), "
              "r: paretoFront(rows.filter((r) => r.status === 'ok'), true, 'samples_per_s', true)}));")
    out = subprocess.run(["node", "--input-type=module", "-e", script], input=json.dumps(rows),
                         capture_output=True, text=True, timeout=60, check=True).stdout
    got = json.loads(out)
    assert got["p"] == pareto_front([r for r in rows if r["status"] == "ok"]) and got["p"]
    assert got["q"] == pareto_front([r for r in rows if r["status"] == "ok"], lower_is_better=True) and got["q"]
    assert got["r"] == pareto_front([r for r in rows if r["status"] == "ok"], lower_is_better=True, x="samples_per_s",
                                    higher_x=True) and got["r"]


def test_selection_from_the_browser_arrives_as_state():
    dash = Dashboard(BENCH)
    dash.set_state({"selected": ["int8/onnxruntime/1x128"], "baseline": "int8/onnxruntime"})  # a comm update
    assert dash.selected == ["int8/onnxruntime/1x128"]
    assert [r["p50_ms"] for r in dash.selected_rows] == [8.0]
    assert "0.50x" in str(dash)  # the text table follows the chosen baseline (torch 1x128: 8/16)
    state = dash.get_state()
    assert [c["key"] for c in state["columns"]][:4] == ["variant", "backend", "batch_size", "seq_len"]  # no model named


def test_live_rows_and_progress_then_the_final_result(monkeypatch):
    """A kernel-like shell gets one dashboard on the first event, filled as rows come; show() puts the
    final result (skipped rows included) into that same dashboard instead of showing another."""
    from hfmagic.benchmarking.result import BenchmarkResult
    from hfmagic.surface.magics import ShellContext

    shown, updated = [], []
    handle = types.SimpleNamespace(update=updated.append)
    monkeypatch.setattr("IPython.display.display", lambda obj, display_id: shown.append(obj) or handle)
    ctx = ShellContext(types.SimpleNamespace(kernel=object(), user_ns={}))
    view = ctx.live("benchmark")
    view({"type": "progress", "done": 0, "total": 3, "label": "starting"})
    dash = view.dashboard
    assert dash.rows == [] and dash.progress == {"done": 0, "total": 3, "label": "starting"}
    for i, row in enumerate(BENCH[:2]):
        view({"type": "row", "row": row})
        view({"type": "progress", "done": i + 1, "total": 3, "label": row["variant"]})
        assert len(dash.rows) == i + 1
    assert dash.progress["done"] == 2
    final = BenchmarkResult(BENCH[:2] + [bench_row("int8", "onnxruntime", 1, 1.0, status="skipped: budget")],
                            ["budget 1 s: skipped 1 of 3"], "benchmark of tiny")
    ctx.show(final)
    assert view.dashboard is dash and dash.progress == {}
    assert [r["status"] for r in dash.rows] == ["ok", "ok", "skipped: budget"]
    assert dash.notes == ["benchmark: budget 1 s: skipped 1 of 3"] and dash.title == "benchmark of tiny"
    assert shown == [dash] and updated == [dash]  # displayed once, its output refreshed at the end


def test_without_a_kernel_or_with_no_widget_the_table_is_shown(shell, capsys):
    from hfmagic.benchmarking.result import BenchmarkResult
    from hfmagic.surface.display import widgets_available
    from hfmagic.surface.magics import ShellContext

    assert not widgets_available(shell)
    assert ShellContext(shell).live("benchmark") is None
    assert ShellContext(types.SimpleNamespace(kernel=object()), widget=False).live("benchmark") is None
    ShellContext(shell).show(BenchmarkResult(BENCH[:1], [], "benchmark of tiny"))
    out = capsys.readouterr().out
    assert out.startswith("benchmark of tiny") and "16.00" in out and "Dashboard" not in out


def test_to_csv_has_every_row_with_the_chosen_baseline(tmp_path):
    dash = Dashboard(BENCH, fake_result(EVAL, metrics=["accuracy"], reference="torch"), baseline="fp32/onnxruntime")
    path = dash.to_csv(tmp_path / "d.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(dash.rows)
    assert list(rows[0])[:5] == ["variant", "backend", "batch_size", "seq_len", "p50_ms"]
    int8 = next(r for r in rows if r["id"] == "int8/onnxruntime/1x128")
    assert float(int8["speedup"]) == pytest.approx(14.0 / 8.0) and float(int8["metric"]) == 0.94
    assert next(r for r in rows if r["id"] == "O2/onnxruntime/1x128")["speedup"] == ""


def test_to_html_is_one_self_contained_page(tmp_path):
    rows = BENCH + [bench_row("O3", "onnxruntime", 1, 1.0, status="failed: </script><b>x</b>"),
                    bench_row("O1", "onnxruntime", 1, 9.0, p95_ms=float("nan"))]
    dash = Dashboard(rows, fake_result(EVAL, metrics=["accuracy"], reference="torch"))
    path = dash.to_html(tmp_path / "d.html", title="My report", extra_html=["<section id='env'>card</section>"])
    page = path.read_text()
    assert "<title>My report</title>" in page and "<section id='env'>card</section>" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//|(import|from)\s*\(?\s*["'](https?:)?//""", page)
    assert page.count("</script>") == 3  # the two data scripts and the loader: the row's text cannot end one
    def no_nan(constant):  # the browser's JSON.parse takes no NaN or Infinity
        raise AssertionError(f"{constant} in the page's JSON")

    state = json.loads(page.split('id="hfmagic-state">')[1].split("</script>")[0], parse_constant=no_nan)
    assert next(r for r in state["rows"] if r["variant"] == "O1")["p95_ms"] is None
    assert [r["id"] for r in state["rows"]] == [r["id"] for r in dash.rows]
    assert state["baseline"] == "torch/torch"
    esm = json.loads(page.split('id="hfmagic-esm">')[1].split("</script>")[0])
    assert esm == JS.read_text()
    assert "<noscript>" in page and "int8" in page.split("<noscript>")[1]  # the table without scripts


def test_real_sweep_streams_into_the_dashboard(tiny_bert, monkeypatch):
    """benchmark()'s own events: each row reaches the dashboard as soon as it finishes."""
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.surface.display import LiveView

    shown, sizes = [], []
    view = LiveView("benchmark", lambda obj, display_id: shown.append(obj))
    real_add = Dashboard.add_row

    def spy(self, row):
        real_add(self, row)
        sizes.append(len(self.rows))

    monkeypatch.setattr(Dashboard, "add_row", spy)
    result = benchmark(tiny_bert, variants=["torch", "fp32"], batch_sizes=[1, 2], seq_lens=[8], threads=1,
                       warmup=1, min_runs=3, min_time=0.02, inline=True, callback=view, progress=False)
    dash = view.dashboard
    # interleaved rounds: the first round's rows arrive one by one, then every round replaces them
    assert shown == [dash] and sizes[:4] == [1, 2, 3, 4] and set(sizes[4:]) == {4} and len(sizes) >= 4 * 5
    assert dash.progress == {"done": 4, "total": 4, "label": dash.progress["label"]}
    view.finish(result)
    name = result.model_name  # every row names its model: the row's own, else the result's
    assert [r["id"] for r in dash.rows] == [
        f"{name}/torch/torch/1x8", f"{name}/torch/torch/2x8", f"{name}/fp32/onnxruntime/1x8",
        f"{name}/fp32/onnxruntime/2x8"]
    assert dash.baseline == dash.sweep_baseline == f"{name}/torch/torch"
    cells = dash.speedups[dash.baseline]
    for row in result.rows:  # against its own baseline the dashboard shows the speed-up the sweep measured
        cell = cells[f"{name}/{row['variant']}/{row['backend']}/{row['batch_size']}x8"]
        assert (cell["value"], cell["low"], cell["high"]) == (row["speedup"], row["speedup_low"], row["speedup_high"])


def test_the_display_carries_the_table_for_frontends_without_widgets():
    data, _ = Dashboard(BENCH)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "int8" in data["text/html"] and "<table>" in data["text/html"]
    assert data["text/plain"].splitlines()[0].split()[:4] == ["variant", "backend", "batch", "seq"]


def test_results_of_two_models_are_joined_by_model_not_by_variant_name():
    """Rows that name no model take their result's: two models' int8 rows stay two rows, each with
    its own model's accuracy."""
    bench_a = fake_result(BENCH, title="bench", model_name="clf", weights_sha256="a" * 64)
    ev_a = fake_result(EVAL, metrics=["accuracy"], reference="torch", model_name="clf", weights_sha256="a" * 64)
    ev_b = fake_result([eval_row("int8", 0.70, 80.0)], metrics=["accuracy"], reference="torch",
                       model_name="other", weights_sha256="b" * 64)
    dash = Dashboard(bench_a, ev_a, ev_b)
    by_id = {r["id"]: r for r in dash.rows}
    assert len(dash.rows) == len(BENCH) + 2  # O4/eval of clf, int8/eval of other
    assert by_id["clf/int8/onnxruntime/1x128"]["metric"] == 0.94
    assert by_id["other/int8/eval"]["metric"] == 0.70 and by_id["other/int8/eval"]["model_sha"] == "b" * 12
    assert not any("replaced" in n for n in dash.notes)
