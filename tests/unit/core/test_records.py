"""Typed records (issue 24, item 4): benchmark and evaluation rows are dataclasses whose fields say
their unit, title, format and meaning once; rows and params recorded before the records read back
as they were; no view writes a figure's title or format itself."""

import ast
import inspect
import json
from pathlib import Path

import pytest

import hfmagic
from hfmagic.core.records import BenchmarkRow, EvalRow, Field, declare, field_of, is_declared
from tests.support.store import RECORDED


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
