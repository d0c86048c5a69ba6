"""What the run store holds, read back: the list of runs, what differs between two, a run again.

:func:`list_runs` gives the table ``%hfmagic runs`` shows (with one headline figure per run),
:func:`compare` what differs between two runs (parameters, provenance, environment) and their
figures side by side, matched by configuration, with the change in percent; :func:`rerun` calls
the run's core function again with its recorded parameters on the model its provenance names.
Housekeeping: :func:`delete_runs` removes runs, :func:`gc` the cached ONNX variants no recorded run
refers to any more.
"""

from __future__ import annotations

import datetime
import html
import inspect
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hfmagic.core.errors import UsageProblem
from hfmagic.core.results import Column, Table, render_text
from hfmagic.core.shapes import shape_text
from hfmagic.store.db import Message, RunStore, hint, recording_off

# how the rows of two runs of a kind are matched, and the figures shown side by side
KEYS = {"benchmark": ("variant", "backend", "batch_size", "seq_len", "image_size", "audio_seconds", "new_tokens"), "evaluate": ("variant",),
        "export": ("variant",), "optimize": ("candidate", "stage")}
FIGURES = {
    "benchmark": ["p50_ms", "e2e_p50_ms", "p95_ms", "mean_ms", "samples_per_s", "peak_mem_mb", "speedup"],
    "evaluate": ["pct_of_reference", "agreement", "flip_rate", "max_logit_diff", "samples_per_s"],
    "export": ["size_mb", "nodes", "max_abs_diff", "cosine", "build_s"],
    "optimize": ["objective", "pct"],
}
# figures read against a row of the run's own (speed-ups against its baseline; % of, agreement with,
# flips from and logit difference to its reference): a change between two runs only where both used
# the same one
RELATIVE = {"benchmark": {"speedup"}, "evaluate": {"pct_of_reference", "agreement", "flip_rate", "max_logit_diff"}}
TIMINGS = {"benchmark": {"p50_ms", "p95_ms", "mean_ms", "samples_per_s", "e2e_p50_ms", "speedup"},
           "evaluate": {"samples_per_s"}, "optimize": {"objective"}}
MACHINE_ENV = {"host", "cpu", "cpu_flags", "physical_cores", "logical_cpus", "memory_gb", "gpus", "machine"}
UNTIMED_ENV = {"cwd", "git"}  # the user's folder and its commit: not what the timings depend on
SHORT_ROW_SHA = 12  # a row's model_sha: the start of its weights' sha256
# recorded for reading a run back, not arguments of its core function
RECORDED_ONLY = {"target", "metric_names", "targets", "variants_by_model",  # targets: the models, from provenance
                 "baseline_used", "reference_used"}  # what the figures were against, as resolved
RUN_COLUMNS = [Column("id"), Column("time"), Column("kind"), Column("model"), Column("weights"), Column("status"),
               Column("rows", "#rows", "d", "right"), Column("tag"), Column("headline")]
SHORT_HASH = 8  # hex digits of the weights' sha256 shown next to the model's name
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _store(store: RunStore | None) -> RunStore:
    return store if store is not None else RunStore()


# -- the list ------------------------------------------------------------------------------------
def list_runs(store: RunStore | None = None, kind: str | None = None, limit: int | None = 20,
              model: str | None = None, since: str | float | None = None) -> Table:
    """The newest runs (all with ``limit=None``), one line each with a headline figure.

    ``kind``, ``model`` (its name, source, or the start of its weights' sha256) and ``since`` (a
    date, a time ago such as ``2h`` or ``3d``, or epoch seconds) keep only the runs that match."""
    store = _store(store)
    if kind is not None and kind not in KEYS:
        raise UsageProblem(f"unknown kind {kind!r}; use one of: {', '.join(KEYS)}")
    after = parse_since(since)
    found = store.runs(kind=kind, limit=limit, model=model, since=after)
    lines = []
    for r in found:
        provenance = r["provenance"] or {}
        each = provenance.get("models") or [provenance.get("model") or {}]  # a several-model run: every one
        lines.append({"id": r["id"], "time": time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"])),
                      "kind": r["kind"], "model": ", ".join(m.get("name", "?") for m in each),
                      "weights": ", ".join((m.get("weights_sha256") or "")[:SHORT_HASH] or "-" for m in each),
                      "status": r["status"], "rows": r["rows"], "tag": r.get("tag"),
                      "headline": headline(r["kind"], store.rows(r["id"]), r["params"] or {}, r["summary"],
                                              r["provenance"])})
    filters = " ".join(f"--{name} {value}" for name, value in (("kind", kind), ("model", model), ("since", since))
                       if value is not None)
    notes = [f"store: {store.path}"]
    if after is not None:
        notes.append(f"--since: runs started at or after {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(after))}")
    if not lines:
        notes.append(f"no runs match {filters}" if filters else
                     f"no runs recorded yet: {hint('recorders')} record theirs here")
    elif limit and len(lines) == limit:
        notes.append(f"the newest {limit}; --limit 0 lists all")
    return Table(lines, RUN_COLUMNS, title="hfmagic runs" + (f" ({filters})" if filters else ""), notes=notes)


def parse_since(since: str | float | None, now: float | None = None) -> float | None:
    """``"2h"``, ``"3d"``, ``"30m"``, ``"1w"``, ``"45s"`` ago, or a date/time (``2026-01-31``,
    ``2026-01-31 14:00``, local time), as epoch seconds."""
    if since is None or isinstance(since, (int, float)):
        return since
    text = str(since).strip()
    ago = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text.lower())
    if ago:
        return (time.time() if now is None else now) - float(ago.group(1)) * UNITS[ago.group(2)]
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageProblem(f"could not read --since {since!r}; give a date (2026-01-31, 2026-01-31 14:00) or a "
                           "time ago (30m, 2h, 3d, 1w)") from None


def headline(kind: str, rows: list[dict], params: dict, summary: dict | None = None,
             provenance: dict | None = None) -> str:
    """One figure that says what a run found: the figure its result shows, against the reference
    (or baseline) the run recorded, with the result's own verdicts."""
    if kind == "optimize":  # its rows are the search's trace; its summary the result's own outcome
        return optimize_headline(rows, params, summary or {})
    ok = [r for r in rows if r.get("status") == "ok"]
    failed = f"; {len(rows) - len(ok)} failed" if len(ok) < len(rows) else ""
    if not ok:
        return "no finished rows" if not rows else f"all {len(rows)} failed"
    name = row_namer(rows)
    run = {"kind": kind, "rows": rows, "params": params, "provenance": provenance or {}}
    if kind == "benchmark":
        from hfmagic.core.stats import speedup_text

        shape = lambda r: f"{name(r)}/{r['backend']} {shape_text(r, compact=True)}"  # noqa: E731
        sped = [r for r in ok if r.get("speedup") is not None]
        if sped:
            best = max(sped, key=lambda r: r["speedup"])
            base = reference_of(run)
            against = f" vs {base['key']}" if base else ""
            return f"best {shape(best)}: {speedup_text(best)}{against}, p50 {best['p50_ms']:.2f} ms{failed}"
        best = min(ok, key=lambda r: r.get("p50_ms") or float("inf"))
        return f"fastest {shape(best)}: p50 {best['p50_ms']:.2f} ms{failed}"
    if kind == "evaluate":
        metric = metric_names(params, rows)[0]
        found = reference_of(run)
        key = found["key"] if found else "?"
        ref = next((r for r in rows if key in (name(r), f"{r.get('model')}/{r['variant']}")), None)
        value = None if ref is None else ref.get(metric)
        text = f"{metric} {'-' if value is None else format(value, '.4f')} ({key})"
        judged = [r for r in ok if r.get("gate") in ("pass", "fail") and r.get("pct_of_reference") is not None]
        if judged:  # the gate's own verdicts; the worst is the lowest % (the highest where lower is better)
            lower = bool(found and found.get("lower_is_better"))
            worst = (max if lower else min)(judged, key=lambda r: r["pct_of_reference"])
            passed = sum(r["gate"] == "pass" for r in judged)
            text += (f"; {'highest' if lower else 'lowest'} {name(worst)} {worst['pct_of_reference']:.1f}%; "
                     f"gate {passed}/{len(judged)} pass")
        return text + failed
    if kind == "export":
        sized = [r for r in ok if r.get("size_mb") is not None and r.get("variant") != "torch"]
        small = min(sized, key=lambda r: r["size_mb"]) if sized else None
        return f"{len(ok)} variant{'s' if len(ok) != 1 else ''}" + (f"; smallest {small['variant']} {small['size_mb']:.1f} MB" if small else "") + failed
    return f"{len(ok)} rows{failed}"


def optimize_headline(rows: list[dict], params: dict, summary: dict) -> str:
    """The search's outcome as its result wrote it (winner, or where and why it stopped); runs
    recorded before the result wrote one: read off the trace and notes, never claiming a gate
    verdict the trace does not hold."""
    if summary.get("outcome"):
        return summary["outcome"]
    keep = params.get("keep") or 99.0
    winner = summary.get("winner")
    if winner:
        return f"winner {winner['candidate']}: {params.get('objective')} {winner['objective']:.3f}, {winner['pct']:.1f}%"
    gated = [r for r in rows if r.get("stage") == "gate" and r.get("pct") is not None]
    stopped = next((n for n in summary.get("notes") or [] if n.startswith("budget: the search stopped")), None)
    verdict = ("no candidate reached the gate" if not gated else
               f"{sum(r['outcome'] == 'kept' for r in gated)} of {len(gated)} gated kept {keep:g}%, none confirmed")
    if stopped:
        return f"stopped by the budget {stopped.removeprefix('budget: the search stopped ')}; {verdict}"
    return f"no winner: {verdict} ({len(rows)} steps traced)"


def row_namer(rows: list[dict]) -> Callable[[dict], str]:
    """How a run's rows are named in its result: ``model/variant`` when several models are in it."""
    several = len({r.get("model") for r in rows}) > 1
    return lambda r: f"{r.get('model')}/{r['variant']}" if several else r["variant"]


def reference_of(run: dict) -> dict | None:
    """What a run's relative figures are against, as the run recorded it: a benchmark's baseline
    (its speed-ups), an evaluation's reference (% of reference, agreement, flips, logit difference).
    ``{"key": the name its result shows, "model", "weights_sha256", "variant", "backend"}``; None
    when it has none. Runs recorded before it was kept: read off the rows (the baseline's speed-up
    is exactly 1; the reference is the row at 100% without a gate verdict, else the first)."""
    params, rows = run.get("params") or {}, run.get("rows") or []
    recorded = params.get({"benchmark": "baseline_used", "evaluate": "reference_used"}.get(run["kind"], ""))
    if recorded:
        return recorded
    if run["kind"] == "benchmark":
        row = next((r for r in rows if r.get("speedup") == 1.0 and r.get("speedup_low") in (None, 1.0)
                    and r.get("speedup_high") in (None, 1.0)), None)
    elif run["kind"] == "evaluate":
        ok = [r for r in rows if r.get("status") == "ok"]
        row = next((r for r in ok if r.get("pct_of_reference") is not None and "gate" not in r), rows[0] if rows else None)
    else:
        return None
    if row is None:
        return None
    model = (run.get("provenance") or {}).get("model") or {}
    name = row_namer(rows)(row)
    return {"key": f"{name}/{row['backend']}" if run["kind"] == "benchmark" else name,
            "model": row.get("model") or model.get("name"),
            "weights_sha256": row.get("model_sha") or model.get("weights_sha256"),
            "variant": row["variant"], "backend": row.get("backend")}


def metric_names(params: dict, rows: list[dict]) -> list[str]:
    """An evaluation's metrics, the first (the one ``pct_of_reference`` is of) first: the recorded
    ``metrics`` argument, else the row keys with a bootstrap interval (``<metric>_low``)."""
    if params.get("metric_names"):  # as resolved (f1 -> f1_macro): the rows' keys
        return list(params["metric_names"])
    if params.get("metrics"):
        return list(params["metrics"])
    ok = [r for r in rows if r.get("status") == "ok"]
    found = list(dict.fromkeys(k for r in ok for k in r if f"{k}_low" in r and f"{k}_high" in r))
    ref = next((r for r in ok if r.get("variant") == params.get("reference")), None)
    other = next((r for r in ok if r is not ref and r.get("pct_of_reference") is not None), None)
    if ref and other:  # the metric whose ratio is the recorded percentage goes first

        def off(m):
            try:
                return abs(other[m] / ref[m] * 100 - other["pct_of_reference"])
            except (TypeError, ZeroDivisionError):
                return float("inf")

        found.sort(key=off)
    return found or [None]


# -- comparing two runs ------------------------------------------------------------------------------
@dataclass
class Comparison:
    """What differs between runs A and B, and their figures side by side."""

    a: dict
    b: dict
    differences: Table
    figures: Table
    notes: list[str] = field(default_factory=list)

    def to_pandas(self):
        return self.figures.to_pandas()

    def __str__(self) -> str:
        head = render_text(f"compare A={self.a['id']} ({self.a['kind']}, {self.a['status']}) "
                           f"with B={self.b['id']} ({self.b['kind']}, {self.b['status']})", [], [], [], self.notes)
        return "\n\n".join([head, str(self.differences), str(self.figures)])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = (f"<strong>compare A={self.a['id']} ({self.a['kind']}, {self.a['status']}) with "
                f"B={self.b['id']} ({self.b['kind']}, {self.b['status']})</strong>"
                + "".join(f"<div><em>note:</em> {html.escape(n)}</div>" for n in self.notes))
        return head + self.differences._repr_html_() + self.figures._repr_html_()


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"packages": {"torch": "2.1"}}`` -> ``{"packages.torch": "2.1"}``; lists become JSON text."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(obj, list):
        return {prefix: json.dumps(obj)}
    return {prefix: obj}


def _short(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):  # a sha256
        return text[:12] + "..."
    return text if len(text) <= 80 else text[:77] + "..."


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _short(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def compare(a: str, b: str, store: RunStore | None = None) -> Comparison:
    """What differs between two runs of the same kind (ids or unique id suffixes)."""
    store = _store(store)
    ra, rb = store.get(a), store.get(b)
    if ra["kind"] != rb["kind"]:
        raise UsageProblem(f"{ra['id']} is a {ra['kind']} run and {rb['id']} a {rb['kind']} run; compare two "
                           "runs of the same kind")
    diffs = []
    for section in ("params", "provenance", "environment"):
        fa, fb = flatten(ra[section] or {}), flatten(rb[section] or {})
        for key in sorted(set(fa) | set(fb)):
            if fa.get(key) != fb.get(key):
                diffs.append({"what": section, "key": key, "a": _short(fa.get(key)), "b": _short(fb.get(key))})
    if ra["status"] != rb["status"]:
        diffs.insert(0, {"what": "run", "key": "status", "a": ra["status"], "b": rb["status"]})
    differences = Table(diffs, [Column("what"), Column("key"), Column("a", "A"), Column("b", "B")],
                        title="what differs" if diffs else "what differs: nothing (same parameters, inputs "
                        "and environment)")
    figures, notes = _side_by_side(ra, rb)
    return Comparison(ra, rb, differences, figures, notes)


def _side_by_side(ra: dict, rb: dict) -> tuple[Table, list[str]]:
    kind = ra["kind"]
    keys = KEYS.get(kind, ("variant",))
    if any((r["provenance"] or {}).get("models") for r in (ra, rb)):  # several models: rows never mix
        keys = ("model",) + keys
    figures = list(FIGURES.get(kind, []))
    if kind == "evaluate":
        metrics = [m for r in (ra, rb) for m in metric_names(r["params"] or {}, r["rows"]) if m]
        figures = list(dict.fromkeys(metrics)) + figures
    unpaired = _unpaired(ra, rb)  # why a figure relative to each run's own reference has no change
    task = _task(ra)

    def index(rows):
        return {tuple(r.get(k) for k in keys): r for r in rows}

    ia, ib = index(ra["rows"]), index(rb["rows"])
    lines = []
    for key in list(ia) + [k for k in ib if k not in ia]:
        label = _label(kind, key, keys)
        ea, eb = ia.get(key), ib.get(key)
        if ea is None or eb is None:
            lines.append({"config": label, "figure": "-", "a": "-" if ea is None else "present",
                          "b": "-" if eb is None else "present", "change": None,
                          "note": f"only in {'A' if eb is None else 'B'}"})
            continue
        if ea.get("status") != eb.get("status"):
            lines.append({"config": label, "figure": "status", "a": _short(ea.get("status")),
                          "b": _short(eb.get("status")), "change": None, "note": ""})
        for fig in figures:
            va, vb = ea.get(fig), eb.get(fig)
            if va is None and vb is None:
                continue
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
            change = (vb - va) / abs(va) * 100 if numeric and va else None
            note = ""
            if fig in RELATIVE.get(kind, ()) and unpaired:
                change, note = None, unpaired
            elif _overlap(ea, eb, fig):
                note = "the intervals overlap: the change may be noise"
            elif fig == "e2e_p50_ms":
                note = f"{task.inputs.PREPROCESSOR} + model per run (p50_ms: the model alone)"
            lines.append({"config": label, "figure": fig, "a": _with_interval(ea, fig), "b": _with_interval(eb, fig),
                          "change": change, "note": note})
    notes = []
    if ra["status"] != "ok" or rb["status"] != "ok":
        notes.append("a run that did not finish ok is compared on the rows it committed")
    shown = {line["figure"] for line in lines}
    if kind == "benchmark" and "speedup" in shown and not unpaired:
        notes.append("A and B were measured apart, not in one interleaved sweep: a speed-up's change is between two "
                     "speed-ups, each with its own 95% interval (beside it), not a paired figure")
    if shown & TIMINGS.get(kind, set()):
        notes += _environment_notes(ra, rb)
    if "e2e_p50_ms" in shown:
        notes.append(task.measurement.e2e_note())
    table = Table(lines, [Column("config"), Column("figure"), Column("a", "A", None, "right"),
                          Column("b", "B", None, "right"), Column("change", "change %", "+.1f", "right"),
                          Column("note")], title=f"figures, matched by {'/'.join(keys)}")
    return table, notes


def _unpaired(ra: dict, rb: dict) -> str | None:
    """Why two runs' figures relative to their own reference row (speed-ups against a baseline, %
    of a reference) cannot be set against each other, or None when both used the same one."""
    if ra["kind"] not in RELATIVE:
        return None
    what = "baselines" if ra["kind"] == "benchmark" else "references"
    fa, fb = reference_of(ra), reference_of(rb)
    if fa is None or fb is None:
        return f"the {what[:-1]} of {'A' if fa is None else 'B'} is not recorded"
    sha_a, sha_b = ((f.get("weights_sha256") or "")[:SHORT_ROW_SHA] for f in (fa, fb))
    same_model = sha_a == sha_b if sha_a and sha_b else fa.get("model") == fb.get("model")
    if same_model and (fa["variant"], fa.get("backend")) == (fb["variant"], fb.get("backend")):
        return None
    if fa["key"] == fb["key"]:  # the same name, other weights
        return f"different {what}: {fa['key']} of weights {sha_a[:SHORT_HASH]} vs {sha_b[:SHORT_HASH]}"
    return f"different {what}: {fa['key']} vs {fb['key']}"


def _with_interval(row: dict, fig: str) -> str:
    """A figure as its result shows it: with its 95% interval where it has one (a speed-up also
    with its caveat)."""
    if fig == "speedup" and row.get(fig) is not None:
        from hfmagic.core.stats import speedup_text

        return speedup_text(row)
    low, high = row.get(f"{fig}_low"), row.get(f"{fig}_high")
    if row.get(fig) is None or low is None or high is None:
        return _number(row.get(fig))
    return f"{_number(row[fig])} [{_number(low)}, {_number(high)}]"


def _overlap(ea: dict, eb: dict, fig: str) -> bool:
    bounds = [(e.get(f"{fig}_low"), e.get(f"{fig}_high")) for e in (ea, eb)]
    if any(v is None for pair in bounds for v in pair):
        return False
    (la, ha), (lb, hb) = bounds
    return la <= hb and lb <= ha


def _environment_notes(ra: dict, rb: dict) -> list[str]:
    """Whether A and B were timed on the same machine and software: a latency change between runs
    recorded on different ones is theirs as much as the runs'."""
    fa, fb = flatten(ra["environment"] or {}), flatten(rb["environment"] or {})
    fa["host"], fb["host"] = ra.get("host"), rb.get("host")
    differ = [k for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k) and k.split(".")[0] not in UNTIMED_ENV]
    machine = [k for k in differ if k.split(".")[0] in MACHINE_ENV]
    software = [k for k in differ if k not in machine]

    def listed(found):
        shown = "; ".join(f"{k}: {_short(fa.get(k))} vs {_short(fb.get(k))}" for k in found[:3])
        return shown + (f"; {len(found) - 3} more" if len(found) > 3 else "")

    notes = []
    if machine:
        notes.append(f"A and B were timed on different machines ({listed(machine)}): a change in their timings is "
                     "the machines' as much as the runs'")
    if software:
        notes.append(f"A and B were timed with different software ({listed(software)}): a change in their timings "
                     "may be that software's")
    return notes


def _task(run: dict):
    """The task of a run's model (its words for notes); a task this hfmagic does not know: text's."""
    from hfmagic.core.errors import UnsupportedError
    from hfmagic.tasks import get_task

    try:
        return get_task(((run["provenance"] or {}).get("model") or {}).get("task") or "text-classification")
    except UnsupportedError:
        return get_task("text-classification")


def _label(kind: str, key: tuple, keys: tuple) -> str:
    named = dict(zip(keys, key))
    model = f"{named['model']}/" if named.get("model") else ""
    if kind == "benchmark":
        new = f" n{named['new_tokens']}" if named.get("new_tokens") else ""
        return f"{model}{named['variant']}/{named['backend']} {shape_text(named, compact=True)}{new}"
    return model + "/".join(str(named[k]) for k in keys if k != "model")


# -- running one again -----------------------------------------------------------------------------
def _core(kind: str) -> Callable:
    if kind == "export":
        from hfmagic.export.api import export_onnx

        return export_onnx
    if kind == "benchmark":
        from hfmagic.benchmarking.api import benchmark

        return benchmark
    if kind == "evaluate":
        from hfmagic.evaluation.api import evaluate

        return evaluate
    raise UsageProblem(f"cannot rerun a {kind!r} run; rerun takes export, benchmark and evaluate runs")


def in_memory(source: Any) -> bool:
    """Whether a recorded data source was an object in memory (``<DataFrame 40 rows>``), not a name."""
    return isinstance(source, str) and source.startswith("<")


def rerun(run_id: str, store: RunStore | None = None, callback: Callable | None = None, progress: bool = True):
    """Call the run's core function again with its recorded parameters and the model its provenance
    names; the new run is recorded with ``rerun_of`` in its provenance."""
    store = _store(store)
    run = store.get(run_id)
    core = _core(run["kind"])
    provenance = run["provenance"] or {}
    several = provenance.get("models") or []
    if several:  # one run of several models: every one of them again, in the same order
        loaded = [_model(run, m) for m in several]
        model, notes = [h for h, _ in loaded], [n for _, ns in loaded for n in ns]
    else:
        model, notes = _model(run)
    kwargs = {k: v for k, v in (run["params"] or {}).items() if k not in RECORDED_ONLY}
    dataset = provenance.get("dataset") or {}
    data_key = {"evaluate": "data", "benchmark": "inputs_source", "export": "calibration"}[run["kind"]]
    if dataset and _is_own_dataset(run, model, dataset, kwargs):
        kwargs[data_key] = None  # evaluate takes the model's own held-out split (the demo's)
    elif dataset and in_memory(dataset.get("source")):
        raise UsageProblem(f"run {run['id']} read its data from an object in memory ({dataset.get('source')}), "
                           "which was not recorded, so it cannot be rerun; save it to a file "
                           f"(df.to_csv('data.csv')) and run %{run['kind']} again with that file")
    elif isinstance(kwargs.get(data_key), str):
        kwargs[data_key] = _path_from(kwargs[data_key], run)
    accepted = inspect.signature(core).parameters
    dropped = sorted(k for k in kwargs if k not in accepted)
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    if "callback" in accepted:
        kwargs["callback"] = callback
    if "progress" in accepted:
        kwargs["progress"] = progress
    result = core(model, **kwargs)
    notes.insert(0, f"rerun of {run['id']} with its recorded parameters; %hfmagic compare {run['id']} "
                    f"{getattr(result, 'run_id', None) or '(not recorded)'} shows what changed")
    if dropped:
        notes.append(f"recorded parameters this hfmagic no longer takes were left out: {', '.join(dropped)}")
    if getattr(result, "run_id", None):
        store.annotate(result.run_id, rerun_of=run["id"])
        before, now = provenance.get("files") or {}, (store.get(result.run_id)["provenance"] or {}).get("files") or {}
        changed = [name for name in before if name in now and now[name] != before[name]]
        if changed:
            notes.append(f"the files of {', '.join(changed)} differ from run {run['id']}'s (sha256): the figures "
                         "are of different graphs")
    result.notes[:0] = notes
    return result


def _model(run: dict, m: dict | None = None):
    """The model a run's provenance names (or ``m``, one of a several-model run's): its folder when
    it is still there, else its source."""
    from hfmagic.models.handle import BUILT_IN_MODELS, load_model

    m = m or (run["provenance"] or {}).get("model") or {}
    source, path = m.get("source"), m.get("path")
    name, task = m.get("name"), m.get("task")
    if source in BUILT_IN_MODELS:  # demo, demo-small: rebuilt from their recipe when the cache has none
        handle = load_model(source, task=task, name=name)
    elif path and (Path(path) / "config.json").exists():
        handle = load_model(path, task=task, name=name)
        if not in_memory(source):
            handle.source, handle.revision = source, m.get("revision")
    elif source and not in_memory(source):
        handle = load_model(source, task=task, revision=m.get("revision"), name=name)
    else:
        raise UsageProblem(f"run {run['id']} was made from a model object in memory, saved at {path}, which is "
                           f"gone; load the model again and run %{run['kind']} on it afresh")
    notes = []
    if m.get("weights_sha256") and handle.weights_sha256 != m["weights_sha256"]:
        notes.append(f"the weights at {handle.path} changed since run {run['id']} (sha256 "
                     f"{m['weights_sha256'][:12]}... then, {handle.weights_sha256[:12]}... now)")
    return handle, notes


def _is_own_dataset(run: dict, model, dataset: dict, kwargs: dict) -> bool:
    """Whether an evaluation read the model's own held-out split (the demo's): told by the data's
    fingerprint, so it is rerun on exactly the same examples."""
    if isinstance(model, list):  # several models: the first one's data is the evaluation's
        model = model[0]
    if run["kind"] != "evaluate" or model.dataset is None:
        return False
    from hfmagic.data.tables import load_data

    again = load_data(model.dataset, text_column=kwargs.get("text_column"), label_column=kwargs.get("label_column"),
                      limit=kwargs.get("limit"))
    return again.fingerprint.get("sha256") == dataset.get("sha256")


def _path_from(value: str, run: dict) -> str:
    """A relative data path is read from the folder the run was made in when it is not here."""
    path = Path(value).expanduser()
    cwd = (run.get("environment") or {}).get("cwd")
    if not path.is_absolute() and not path.exists() and cwd and (Path(cwd) / path).exists():
        return str(Path(cwd) / path)
    return value


# -- housekeeping ------------------------------------------------------------------------------------
def tag_run(run_id: str, text: str | None, store: RunStore | None = None) -> Message:
    """Give a run a tag, shown in the runs list (an empty one clears it)."""
    store = _store(store)
    full = store.tag(run_id, text)
    return Message(f"run {full} tagged {text!r}" if text else f"run {full}'s tag cleared")


def delete_runs(run_ids: list[str], ask: Callable[[str], bool] | None = None,
                store: RunStore | None = None) -> Message:
    """Delete runs and their rows. Every id is checked first; ``ask`` (given the question) may say
    no, and then nothing is deleted."""
    store = _store(store)
    ids = list(dict.fromkeys(store.resolve(r) for r in run_ids))
    found = {r["id"]: r for r in store.runs()}
    rows = sum(found[i]["rows"] for i in ids if i in found)
    what = f"{len(ids)} run{'s' if len(ids) != 1 else ''} ({', '.join(ids)}) and {rows} row{'s' if rows != 1 else ''}"
    if ask is not None and not ask(f"delete {what} from {store.path}? [y/N] "):
        return Message("nothing deleted")
    store.delete(ids)
    return Message(f"deleted {what}; the variants they built stay cached ({hint('gc')} removes those no run "
                   "refers to)")


GC_COLUMNS = [Column("folder"), Column("variant"), Column("size", "size MB", ".1f", "right"), Column("built"),
              Column("action")]


def gc(dry_run: bool = False, store: RunStore | None = None) -> Table:
    """Remove the cached ONNX variants (``<cache>/onnx/<key>`` folders) that no recorded run refers to,
    by the sha256 of their file or by their path; ``dry_run`` lists them and deletes nothing.
    Variants written with ``--output`` are never touched."""
    from hfmagic.core.config import settings
    from hfmagic.export.api import META, sweep_stale_temps

    store = _store(store)
    shas, paths = store.referenced_files()  # a damaged store stops here: it cannot say what is in use
    root = settings().cache_path / "onnx"
    kept, foreign, lines = 0, [], []
    used = [Path(p).resolve() for p in paths]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".tmp-")) if root.is_dir() else []
    for folder in folders:
        try:
            meta = json.loads((folder / META).read_text())
        except (OSError, ValueError):
            foreign.append(folder.name)
            continue
        here = folder.resolve()
        if meta.get("sha256") in shas or any(p.is_relative_to(here) for p in used):
            kept += 1
            continue
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
        lines.append({"folder": folder.name, "variant": meta.get("name"), "size": size / 1e6,
                      "built": time.strftime("%Y-%m-%d %H:%M", time.localtime((folder / META).stat().st_mtime)),
                      "action": "would remove" if dry_run else "removed", "path": str(folder)})
        if not dry_run:
            shutil.rmtree(folder)
    if not dry_run and root.is_dir():
        sweep_stale_temps(root)  # and builds left half-done by processes that are gone
    freed = sum(line["size"] for line in lines)
    notes = [f"{'would free' if dry_run else 'freed'} {freed:.1f} MB: {len(lines)} cached variant"
             f"{'s' if len(lines) != 1 else ''} no recorded run refers to"
             + (" (--dry-run: nothing deleted)" if dry_run else ""),
             f"kept {kept} variant{'s' if kept != 1 else ''} that runs in {store.path} refer to"]
    if foreign:
        notes.append(f"left alone: {len(foreign)} folder{'s' if len(foreign) != 1 else ''} in {root} without "
                     f"hfmagic's record ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''})")
    if recording_off():
        notes.append("recording is off, so variants used since are not in the store and count as unused here")
    return Table(lines, GC_COLUMNS, title=f"hfmagic gc: {root}", notes=notes)
