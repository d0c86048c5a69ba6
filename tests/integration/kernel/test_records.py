"""Typed records through a real shell: a run recorded with an older hfmagic's params reruns, and the
table, the report and the dashboard agree field by field."""

import json
import random


import hfmagic
from hfmagic.core.records import BenchmarkRow, EvalRow, field_of
from tests.support.fast import INLINE_TIMING as FAST
from tests.support.store import ADDED_SINCE_RECORDED, RECORDED

SPEEDUP = ("speedup", "speedup_low", "speedup_high", "speedup_trust")


def test_a_run_recorded_with_the_params_of_an_older_hfmagic_reruns(shell, store_in_shell, tiny_bert, tmp_path):
    """``%hfmagic rerun`` of a benchmark and an evaluation whose params an older hfmagic wrote (the
    fixture's, on this machine's model and data) runs them again with those options."""
    from tests.support.tiny import labelled

    model = hfmagic.load_model(str(tiny_bert), name="tiny")
    card = {"source": str(tiny_bert), "path": str(tiny_bert), "name": "tiny", "task": model.task,
            "revision": None, "weights_sha256": model.weights_sha256}
    labelled(40, seed=3).to_csv(tmp_path / "data.csv", index=False)
    for name, data in (("benchmark", {}), ("evaluate", {"data": str(tmp_path / "data.csv")})):
        params = {**RECORDED[name]["params"], "target": str(tiny_bert), **data}
        run = store_in_shell.start(name, params, {"model": card})
        run.finish()
        again = shell.run_line_magic("hfmagic", f"rerun {run.id} -q")
        assert again.notes[0].startswith(f"rerun of {run.id} with its recorded parameters")
        assert not any("no longer takes" in n for n in again.notes)
        assert {r["variant"] for r in again.rows} == {"torch", "fp32"} and all(r["status"] == "ok" for r in again.rows)
        kept = store_in_shell.get(again.run_id)["params"]
        assert {k: kept[k] for k in params if k not in ("target", "baseline_used", "reference_used")} == \
            {k: v for k, v in params.items() if k not in ("target", "baseline_used", "reference_used")}


# -- one truth: the table, the report and the dashboard --------------------------------------------------
def cells(table, key_of) -> dict:
    """Name -> {column key: cell} of a table's rows, and column key -> heading."""
    keys = [c.key for c in table.columns]
    return ({key_of(r): dict(zip(keys, written)) for r, written in zip(table.rows, table.cells())},
            {c.key: c.heading() for c in table.columns})


def test_the_table_the_report_and_the_dashboard_agree_field_by_field(shell, store_in_shell, tiny_bert, kernel_display,
                                                                     tmp_path):
    """One real benchmark and evaluation of a tiny model through the shell: the text tables, the
    report's summary and the dashboard's state (live, and the report page's) write the same speed-up
    (with its interval or its 'not trustworthy', and the same value, interval and trust behind it),
    p50, metric with its interval, % of reference and gate, under the same headings; and the run store
    keeps the rows and params an older hfmagic kept, key for key."""
    import pandas as pd

    from tests.support.tiny import LABELS, sentences

    shell.run_line_magic("load_model", f"{tiny_bert} --name agree -q")
    shell.run_line_magic("benchmark", f"agree --variants torch,fp32 --batch-sizes 1,2 --seq-lens 8 {FAST} "
                                      "--name agree_b")
    rng = random.Random(0)
    texts = sentences(40, seed=5)
    shell.user_ns["agree_df"] = pd.DataFrame({"text": texts, "label": [rng.choice(LABELS) for _ in texts]})
    shell.run_line_magic("evaluate", "agree --data agree_df --variants torch,fp32 --name agree_e")
    bench, ev = shell.user_ns["agree_b"], shell.user_ns["agree_e"]
    report = shell.run_line_magic("hfmagic", f"report {bench.run_id} {ev.run_id} --html {tmp_path / 'r.html'}")
    page = (tmp_path / "r.html").read_text()
    saved = json.loads(page.split('id="hfmagic-state">')[1].split("</script>")[0])
    live = hfmagic.Dashboard(bench, ev).state()

    smallest = [r for r in bench.rows if r["batch_size"] == 1]  # the shape the summary shows
    table, table_headings = cells(bench.table(), lambda r: (r["variant"], r["batch_size"]))
    scores, score_headings = cells(ev.table(), lambda r: r["variant"])
    summary, summary_headings = cells(report.summary, lambda r: r["variant"])
    for key in ("p50_ms", "speedup"):  # one heading for a figure, wherever it is shown
        assert table_headings[key] == summary_headings[key] == field_of(key).heading()
    assert score_headings["accuracy"] == summary_headings["metric"] == "accuracy"
    assert score_headings["accuracy_ci"] == summary_headings["metric_ci"] == "95% CI"
    for state in (live, saved):
        shown = {r["id"]: r for r in state["rows"]}
        heading = {c["key"]: c["title"] for c in state["columns"]}
        speed = state["speedups"][state["baseline"]]
        assert state["baseline"] == "agree/torch/torch"
        for row in smallest:
            v = row["variant"]
            ident = f"agree/{v}/{row['backend']}/1x8"
            said, line, cell = table[(v, 1)], summary[v], shown[ident]["cells"]
            for key in ("p50_ms", "speedup"):
                assert heading[key] == table_headings[key]
            assert said["p50_ms"] == line["p50_ms"] == cell["p50_ms"] != ""
            assert said["speedup"] == line["speedup"] == speed[ident]["text"] != ""
            assert (speed[ident]["value"], speed[ident]["low"], speed[ident]["high"], speed[ident]["trust"]) == \
                tuple(row[k] for k in SPEEDUP)
            assert heading["metric"] == "accuracy" and heading["metric_ci"] == "95% CI"
            score = scores[v]
            assert score["accuracy"] == line["metric"] == cell["metric"] != ""
            assert score["accuracy_ci"] == line["metric_ci"] == cell["metric_ci"] != ""
            assert score["pct_of_reference"] == line["pct_of_reference"] == cell["pct_of_reference"] != ""
            assert score["gate"] == line["gate"] == cell["gate"] == {"torch": "reference", "fp32": "pass"}[v]
        assert all(state["fields"][k]["doc"] for k in heading)  # the page says what every column is

    # the store keeps what an older hfmagic kept: the same keys in every row (and the two modes of a row
    # whose runs form two, which a busy machine can give a tiny model's rows) and the same params
    for result, old, record in ((bench, RECORDED["benchmark"], BenchmarkRow), (ev, RECORDED["evaluate"], EvalRow)):
        run = store_in_shell.get(result.run_id)
        before = {r["variant"]: set(r) for r in old["rows"]}
        assert all(set(r) - (record.GIVEN_ONLY if r.get("modes_ms") else set()) - ADDED_SINCE_RECORDED
                   == before[r["variant"]]
                   for r in run["rows"])
        assert record is EvalRow or all(ADDED_SINCE_RECORDED <= set(r) for r in run["rows"])
        assert set(run["params"]) == set(old["params"])
        assert run["rows"] == [r.to_dict() for r in result.rows]
