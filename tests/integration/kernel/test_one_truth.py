"""One truth per figure: the dashboard a kernel shows for %benchmark and %evaluate holds the figures
the text tables hold (the speed-up with its interval or its "not trustworthy", the gate verdict and
the metric's interval), a baseline from another run gives no speed-up and says why, and two models
that share their weights keep their own rows in the dashboard and in the report."""

import json
import random
import shutil

from hfmagic.ui.rows import row_id
from hfmagic.ui.widget import Dashboard
from tests.support.fast import INLINE_TWO_BATCHES as FAST


def column(table, key) -> dict[str, str]:
    """Row id -> the text a table writes in column ``key``."""
    keys = [c.key for c in table.columns]
    return {row_id({**r, "model": r.get("model")}): cells[keys.index(key)]
            for r, cells in zip(table.rows, table.cells())}


def dashboard_column(dash: Dashboard, key) -> dict[str, str]:
    table = dash.table()
    keys = [c.key for c in table.columns]
    return {r["id"]: cells[keys.index(key)] for r, cells in zip(dash.rows, table.cells())}


def test_the_dashboard_shows_the_speedups_the_table_shows(shell, tiny_bert, kernel_display):
    """Against the sweep's own baseline the dashboard writes each speed-up as the benchmark's table
    does, interval or "not trustworthy" included (one round here: too few to trust), and says how it
    was computed."""
    shell.run_line_magic("load_model", f"{tiny_bert} --name truth -q")
    shell.run_line_magic("benchmark", f"truth --variants torch,fp32 {FAST} --max-time 0.01 --name one_round")
    bench = shell.user_ns["one_round"]
    dash = kernel_display[-1]
    assert isinstance(dash, Dashboard) and dash.baseline == dash.sweep_baseline == "truth/torch/torch"
    said = column(bench.table(), "speedup")
    shown = dashboard_column(dash, "speedup")
    assert shown == said and len(shown) == 4
    assert any("not trustworthy: 1 rounds" in text for text in shown.values())
    notes = str(dash)
    assert "speed-up vs truth/torch/torch: as the benchmark measured it (paired by round" in notes
    assert "p50 of truth/torch/torch at the same shape over the row's p50" not in notes


def test_a_baseline_measured_in_another_run_gives_no_speedup_and_says_why(shell, tiny_bert, kernel_display):
    shell.run_line_magic("load_model", f"{tiny_bert} --name apart -q")
    shell.run_line_magic("benchmark", f"apart --variants torch,fp32 {FAST} --name first -q")
    shell.run_line_magic("benchmark", f"apart --variants torch,fp32 {FAST} --name second -q")
    first, second = shell.user_ns["first"], shell.user_ns["second"]
    dash = Dashboard(first, second)  # the second's rows replace the first's: one run's rows remain
    assert "4 benchmark rows replaced earlier ones" in " ".join(dash.notes)
    # a user's own list of rows from two runs: the rows measured apart from the baseline get no figure
    mixed = Dashboard([r for r in first.rows if r["variant"] == "torch"],
                      [r for r in second.rows if r["variant"] == "fp32"], baseline="apart/torch/torch")
    cells = mixed.speedups["apart/torch/torch"]
    assert cells["apart/torch/torch/1x8"]["value"] == 1.0
    fp32 = cells["apart/fp32/onnxruntime/1x8"]
    assert fp32["value"] is None and fp32["text"] == ""
    assert fp32["why"] == "measured in another run than the baseline: runs measured apart cannot be paired"
    assert "runs measured apart cannot be paired" in str(mixed)


def test_the_evaluation_dashboard_shows_the_gate_and_the_interval(shell, tiny_bert, kernel_display):
    import pandas as pd

    from tests.support.tiny import LABELS, sentences

    rng = random.Random(0)
    texts = sentences(40, seed=5)
    shell.user_ns["gate_df"] = pd.DataFrame({"text": texts, "label": [rng.choice(LABELS) for _ in texts]})
    shell.run_line_magic("load_model", f"{tiny_bert} --name gated -q")
    shell.run_line_magic("evaluate", "gated --data gate_df --variants torch,fp32 --name gated_ev")
    ev, dash = shell.user_ns["gated_ev"], kernel_display[-1]
    assert isinstance(dash, Dashboard)
    table = ev.table()
    keys = [c.key for c in table.columns]
    verdicts = {r["variant"]: cells[keys.index("gate")] for r, cells in zip(table.rows, table.cells())}
    intervals = {r["variant"]: cells[keys.index("accuracy_ci")] for r, cells in zip(table.rows, table.cells())}
    gates, cis = dashboard_column(dash, "gate"), dashboard_column(dash, "metric_ci")
    assert {i.split("/")[1]: t for i, t in gates.items()} == verdicts == {"torch": "reference", "fp32": "pass"}
    assert {i.split("/")[1]: t for i, t in cis.items()} == intervals
    heading = [c.heading() for c in dash.table().columns]
    assert "gate (99%)" in heading and "95% CI" in heading and "% of reference" in heading


def test_two_names_for_one_set_of_weights_keep_their_rows(shell, tiny_bert, tmp_path):
    """A copied folder loaded under another name is another model: the dashboard shows all four
    rows, the baseline is the first model's, and the report's summary and dashboard hold both."""
    import hfmagic

    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert, copy)
    a = hfmagic.load_model(str(tiny_bert), name="orig")
    b = hfmagic.load_model(str(copy), name="twin")
    assert a.weights_sha256 == b.weights_sha256
    bench = hfmagic.benchmark([a, b], variants=["torch"], batch_sizes=[1, 2], seq_lens=[8], threads=1, warmup=1,
                              min_runs=3, min_time=0.02, inline=True, progress=False)
    dash = Dashboard(bench)
    assert sorted(r["id"] for r in dash.rows) == ["orig/torch/torch/1x8", "orig/torch/torch/2x8",
                                                  "twin/torch/torch/1x8", "twin/torch/torch/2x8"]
    assert dash.baseline == "orig/torch/torch"
    from hfmagic.runs.report import write_report

    report = write_report([bench.run_id], tmp_path / "report.html")
    assert [r["model"] for r in report.summary.rows] == ["orig", "twin"]
    page = (tmp_path / "report.html").read_text()
    state = json.loads(page.split('id="hfmagic-state">')[1].split("</script>")[0])
    assert sorted(r["id"] for r in state["rows"]) == sorted(r["id"] for r in dash.rows)
