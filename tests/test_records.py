"""Typed records (issue 24, item 4): benchmark and evaluation rows are dataclasses whose fields say
their unit, title, format and meaning once; every view (the tables, the report's summary, the run
list, compare and the dashboard) reads them there; the run store keeps the same JSON as before; a
call's options are one dataclass that is its signature and what ``rerun`` rebuilds. The fixture
``fixtures/records/recorded.json`` holds the params and rows that hfmagic recorded before the records
(a tiny BERT's benchmark and evaluation, a tiny Llama's; the raw sample lists cut to six)."""

import ast
import inspect
import json
import random
from pathlib import Path

import pytest

import hfmagic
from hfmagic.core.records import BenchmarkRow, EvalRow, Field, declare, field_of, is_declared
from tests.support.fast import INLINE_TIMING as FAST
from tests.support.store import RECORDED

SPEEDUP = ("speedup", "speedup_low", "speedup_high", "speedup_trust")


def metric_keys(run: dict) -> set[str]:
    return {f"{m}{end}" for m in run["params"]["metric_names"] for end in ("", "_low", "_high")}


# -- the rows ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RECORDED))
def test_rows_recorded_before_the_records_read_back_as_they_were(name):
    """A stored row of an older hfmagic becomes a record and back without a key lost, added or
    changed; it reads as the dict it was, and its own fields as typed attributes."""
    run = RECORDED[name]
    record = BenchmarkRow if run["kind"] == "benchmark" else EvalRow
    for stored in run["rows"]:
        row = record.from_dict(stored)
        assert row.to_dict() == stored and sorted(row) == sorted(stored) and row == stored
        assert json.loads(json.dumps(row.to_dict())) == stored
        assert row.variant == stored["variant"] and row["status"] == stored["status"]
        assert {**row} == stored and dict(row) == stored and len(row) == len(stored)
        if record is BenchmarkRow:
            assert row.p50_ms == stored["p50_ms"] and "ttft_p50_ms" in row  # every task's figures, None here
        else:
            assert "backend" not in row and row.get("backend") is None  # given only with --backend, as before


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_every_key_of_a_row_says_what_it_is(name):
    """Each key a benchmark or evaluation row carries is a documented field (a record's, a task's or
    a metric's, made from its name), with its unit where it is a measurement."""
    run = RECORDED[name]
    record = BenchmarkRow if run["kind"] == "benchmark" else EvalRow
    for key in {k for r in run["rows"] for k in r}:
        if run["kind"] == "evaluate" and key in metric_keys(run):
            continue
        assert is_declared(key), f"{key} of a {run['kind']} row is described nowhere"
        described = field_of(key, record)
        assert described.doc, f"{key} has no meaning written"
        if key.endswith("_ms"):
            assert described.unit == "ms", key


def test_every_field_has_a_meaning_and_a_figure_has_its_format():
    for record in (BenchmarkRow, EvalRow):
        for key, f in record.FIELDS.items():
            assert f.key == key and f.doc, key
            assert not f.unit or f.fmt or f.derive or key.endswith(("samples_ms", "_rounds")), key


def test_a_key_means_one_thing():
    with pytest.raises(ValueError, match="'p50_ms' is declared already, as 'p50 ms'"):
        declare(Field("p50_ms", "p50 s", "s", ".1f", "something else"))
    declare(field_of("ttft_p50_ms"))  # the same declaration again is the same field


def test_no_view_writes_a_figures_title_or_format_itself():
    """The tables, the report, the dashboard's rows and the tasks' columns take every column from the
    records' fields: no ``Column(key, title, format)`` of their own."""
    root = Path(hfmagic.__file__).parent
    views = ["benchmarking/result.py", "evaluation/result.py", "ui/rows.py", "ui/widget.py", "runs/report.py",
             "tasks/base.py", "tasks/generation/task.py", "tasks/speech/task.py", "tasks/vision/task.py"]
    for view in views:
        tree = ast.parse((root / view).read_text())
        own = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call)
               and getattr(n.func, "id", None) == "Column" and (len(n.args) > 2 or n.keywords)]
        assert own in ([], ["Column(c.key, c.title, None, c.align)"]), f"{view}: {own}"


# -- the options ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["benchmark", "evaluate"])
def test_a_calls_options_are_its_signature_and_help(kind):
    func = getattr(hfmagic, kind)
    options = func.OPTIONS
    fields = {f.name: f for f in __import__("dataclasses").fields(options)}
    signature = inspect.signature(func)
    assert list(signature.parameters) == ["target", *fields]
    assert all(signature.parameters[n].default == f.default for n, f in fields.items())
    assert all(f.metadata["doc"].split(" (")[0][:30] in " ".join(func.__doc__.split()) for f in fields.values())
    with pytest.raises(TypeError, match="unexpected keyword argument 'nosuch'"):
        func("demo", nosuch=1)


@pytest.mark.parametrize("name", ["benchmark", "evaluate", "gen_benchmark", "gen_evaluate"])
def test_params_recorded_before_rebuild_the_options(name):
    """What the store kept for a run of an older hfmagic is the options again, nothing dropped; and
    what the options keep now is what it kept (the recorded-only keys beside them)."""
    run = RECORDED[name]
    func = getattr(hfmagic, run["kind"])
    options, dropped = func.OPTIONS.from_params(run["params"])
    assert dropped == []
    kept = options.params()
    assert {k: run["params"][k] for k in kept} == kept
    axis = {"seq_lens"} if run["kind"] == "benchmark" else set()
    assert set(run["params"]) == set(kept) | (set(run["params"]) & func.OPTIONS.RECORDED) | axis


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

    # the store keeps what an older hfmagic kept: the same keys in every row and the same params
    for result, old in ((bench, RECORDED["benchmark"]), (ev, RECORDED["evaluate"])):
        run = store_in_shell.get(result.run_id)
        before = {r["variant"]: set(r) for r in old["rows"]}
        assert all(set(r) == before[r["variant"]] for r in run["rows"])
        assert set(run["params"]) == set(old["params"])
        assert run["rows"] == [r.to_dict() for r in result.rows]
