"""``%hfmagic compare A B``: what differs between two runs (parameters, provenance, environment) and
their figures side by side, matched by configuration, with the change in percent, where a change
can be read at all (same baseline or reference; intervals that overlap said so)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

from hfmagic.core.errors import UnsupportedError, UsageProblem
from hfmagic.core.records import BenchmarkRow, EvalRow, field_of
from hfmagic.core.results import Column, Table, render_text
from hfmagic.core.shapes import shape_text
from hfmagic.runs.history import KEYS, SHORT_HASH, metric_names, open_store, reference_of
from hfmagic.store.db import RunStore
from hfmagic.tasks import get_task

FIGURES = {
    "benchmark": ["p50_ms", "e2e_p50_ms", "p95_ms", "mean_ms", "samples_per_s", "peak_mem_mb", "speedup"],
    "evaluate": ["pct_of_reference", "agreement", "flip_rate", "max_logit_diff", "samples_per_s"],
    "export": ["size_mb", "nodes", "max_abs_diff", "cosine", "build_s"],
    "optimize": ["objective", "pct"],
    "loadtest": ["achieved_rps", "p50_ms", "p99_ms", "server_p50_ms", "ttft_p99_ms", "tpot_p50_ms"],
}
# the records of a kind of run: which of its figures are timings and which are read against a row
# of the run's own (a speed-up against its baseline; % of, agreement with, flips from and logit
# difference to its reference): a change between two runs of those only where both used the same one
RECORDS = {"benchmark": BenchmarkRow, "evaluate": EvalRow}
TIMED = {"optimize": {"objective"},  # a search's objective is a timing; its trace is no record
         "loadtest": {"achieved_rps", "p50_ms", "p99_ms", "server_p50_ms", "ttft_p99_ms", "tpot_p50_ms"}}
MACHINE_ENV = {"host", "cpu", "cpu_flags", "physical_cores", "logical_cpus", "memory_gb", "gpus", "machine"}
UNTIMED_ENV = {"cwd", "git"}  # the user's folder and its commit: not what the timings depend on
SHORT_ROW_SHA = 12  # a row's model_sha: the start of its weights' sha256


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
    store = open_store(store)
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
            if _is(kind, fig, "relative") and unpaired:
                change, note = None, unpaired
            elif kind == "evaluate" and (apart := _batches_apart(ea, eb)):
                note = apart
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
    if any(_is(kind, fig, "timed") for fig in shown):
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
    if ra["kind"] not in RECORDS:
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


def _batches_apart(ea: dict, eb: dict) -> str | None:
    """Why a variant's figures in two evaluations may differ for its batch size alone: it was scored
    at other sizes and its predictions depend on the batch (dynamic int8's activation ranges)."""
    sizes = [e.get("batch_sizes") or [e.get("batch_size")] for e in (ea, eb)]
    if not (ea.get("batch_dependent") or eb.get("batch_dependent")) or sizes[0] == sizes[1]:
        return None
    return (f"scored at batch {'/'.join(map(str, sizes[0]))} in A, {'/'.join(map(str, sizes[1]))} in B: its "
            "predictions depend on the batch, so part of the change is the batch size's")


def _is(kind: str, fig: str, what: str) -> bool:
    """Whether a kind of run's figure is ``timed`` or ``relative``, as its record's field says."""
    record = RECORDS.get(kind)
    return fig in TIMED.get(kind, ()) or record is not None and getattr(field_of(fig, record), what)


def _with_interval(row: dict, fig: str) -> str:
    """A figure as its result shows it: with its 95% interval where it has one (a speed-up as its
    field writes it, with its caveat)."""
    if fig == "speedup" and row.get(fig) is not None:
        return field_of("speedup").write(row)
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

    try:
        return get_task(((run["provenance"] or {}).get("model") or {}).get("task") or "text-classification")
    except UnsupportedError:
        return get_task("text-classification")


def _label(kind: str, key: tuple, keys: tuple) -> str:
    named = dict(zip(keys, key))
    model = f"{named['model']}/" if named.get("model") else ""
    if kind == "benchmark":
        return f"{model}{named['variant']}/{named['backend']} {shape_text(named, compact=True)}"
    return model + "/".join(str(named[k]) for k in keys if k != "model")
