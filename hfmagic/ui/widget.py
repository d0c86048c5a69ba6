"""The dashboard: benchmark and evaluation results in one interactive view (an anywidget).

``Dashboard(*results)`` joins benchmark rows (one per model x variant x backend x node x shape) with
evaluation rows (one per model x variant) by model and variant, and syncs them to
``js/dashboard.js``: a sortable, filterable table with a baseline selector, a latency-against-accuracy
scatter (marker area from the size on disk, colour by model) with its Pareto front across all models,
and a speed-up bar chart. Results of several models go in one dashboard: every row carries its
model's name and weights hash (``model``, ``model_sha``), from the row itself or, for rows that
predate them, from the result (or recorded run) they came from. Selecting rows in the browser sets
``selected`` here.

**Every figure is computed in Python, once, and written there** (:mod:`hfmagic.ui.rows`): each
row carries its cells as the text tables write them (``cells``, by the same
:class:`~hfmagic.core.results.Column` formats), and the speed-up
against each baseline is a cell of ``speedups`` (value, interval, trust, text, or why there is
none). Against the sweep's own baseline it is the figure the benchmark measured (paired by round
when its rounds were interleaved; "not trustworthy" where too few clean rounds); against another
row of the same sweep it is recomputed from the raw samples by the same rule
(:func:`hfmagic.core.stats.speedup_of`); rows measured in another run than the baseline get none, and
say why (runs measured apart cannot be paired). The browser shows these strings and sorts and
plots the raw values; the only rule it applies itself is the Pareto front of the rows in view
(:func:`hfmagic.ui.rows.pareto_front` is its Python twin, and a test runs both).

``to_html(path)`` writes one self-contained page (the same ES module, its data and a small model
stand-in inlined) that stays interactive offline; ``to_csv(path)`` writes the table.
"""

from __future__ import annotations

import csv
import html
import json
import re
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

import anywidget
import traitlets

from hfmagic.core.errors import UsageProblem
from hfmagic.core.records import field_of
from hfmagic.core.results import Column, Table, gate_title
from hfmagic.core.shapes import AXES, shape_of, shape_text
from hfmagic.ui.rows import (ALWAYS, COLUMNS, DATA_COLUMN, EXTRA_CELLS, GENERATION_TITLES, batch_note, generating,
                             is_benchmark_row, join, measured, model_of, own_baseline, page_fields, pair, row_id,
                             speedup_cells, where)

_HERE = Path(__file__).resolve().parent
# an installed wheel carries js/ inside the package (pyproject's package-dir maps hfmagic.js to js/);
# a source checkout has it at the repository's root
_JS_DIR = next((d for d in (_HERE.parent / "js", _HERE.parent.parent / "js") if (d / "dashboard.js").is_file()),
               _HERE.parent.parent / "js")

class DashboardError(UsageProblem):
    """What the dashboard was given cannot be shown (not a result; a baseline no row has)."""


def _rows_of(result: Any) -> list[dict]:
    """The rows of a result the dashboard takes; anything else is one line saying what it takes."""
    rows = result if isinstance(result, (list, tuple)) else getattr(result, "rows", None)
    if isinstance(rows, (list, tuple)) and all(isinstance(r, Mapping) and "variant" in r for r in rows):
        return list(rows)
    shown = repr(result)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise DashboardError(f"Dashboard takes benchmark and evaluation results (what hfmagic.benchmark() and "
                         f"hfmagic.evaluate() return, or lists of their rows), not {type(result).__name__} "
                         f"{shown}; e.g. hfmagic.Dashboard(bench, ev)")


@contextmanager
def writing(path: Path):
    """``path`` opened for writing text; a place that cannot be written (read-only, no such folder,
    a folder) is one line that says so, not an OSError."""
    try:
        with path.open("w", newline="", encoding="utf-8") as f:
            yield f
    except OSError as exc:
        raise cannot_write(path, exc) from None


def cannot_write(path: Path, exc: OSError) -> UsageProblem:
    return UsageProblem(f"cannot write {path} ({exc.strerror or exc}); give a file in a folder you can "
                        "write to")


def _canonical(baseline: str | None, rows: list[dict]) -> str | None:
    """``baseline`` as the rows name it: ``variant/backend`` becomes ``model/variant/backend`` where
    the rows are of one model."""
    if not baseline:
        return baseline
    pairs = {pair(r) for r in rows}
    models = {r.get("model") for r in rows if r.get("model")}
    if baseline not in pairs and len(models) == 1 and f"{next(iter(models))}/{baseline}" in pairs:
        return f"{next(iter(models))}/{baseline}"
    return baseline


def _tell_apart(rows: list[dict]) -> None:
    """Two models with one name (two folders loaded under one name) are shown as name@sha."""
    hashes: dict[str, set] = {}
    for r in rows:
        if r.get("model"):
            hashes.setdefault(r["model"], set()).add(r.get("model_sha"))
    for r in rows:
        if len(hashes.get(r.get("model"), ())) > 1:
            r["model"] = f"{r['model']}@{(r.get('model_sha') or 'unhashed')[:8]}"
            r["id"] = row_id(r)


def _different_data(rows: list[dict], sources: dict[str, str]) -> str:
    """The warning for evaluations of different data: which models were evaluated on which."""
    groups: dict[str, list[str]] = {}
    for r in rows:
        if r.get("data_sha") and r.get("model") not in groups.setdefault(r["data_sha"], []):
            groups[r["data_sha"]].append(r.get("model") or "?")
    parts = [f"{', '.join(models)} on {sources.get(sha, 'data')} (sha256 {sha})" for sha, models in groups.items()]
    return (f"evaluations of different data: {'; '.join(parts)}. Their accuracies (and the Pareto front) "
            "compare different examples; evaluate every model on the same data to compare them")


def _kind(rows: list[dict]) -> str:
    return "benchmark" if any(is_benchmark_row(r) for r in rows) else "evaluation"


def _metric_of(result: Any, rows: list[dict]) -> str | None:
    """The evaluation's first metric: its ``metrics`` list, else the first key with a ``_low`` twin."""
    metrics = getattr(result, "metrics", None)
    if metrics:
        return metrics[0]
    for row in rows:
        for key in row:
            if f"{key}_low" in row and key != "speedup":
                return key
    return None


class Dashboard(anywidget.AnyWidget):
    """Benchmark and/or evaluation results, of one model or several, in one interactive view.

    ``Dashboard(bench, ev, baseline="demo/torch/torch")``: any number of results (objects with
    ``.rows`` as ``benchmark()`` and ``evaluate()`` return, or lists of such rows), of any models.
    A row belongs to the model it names (``model``/``model_sha``), else to its result's model. A
    later result's row with the same model, variant, backend, node and shape as an earlier one
    replaces it (a note says so); evaluations of different data are flagged in ``warnings``.
    Speed-ups pair rows of one benchmark only: see the module docstring.
    """

    _esm = _JS_DIR / "dashboard.js"
    _css = _JS_DIR / "dashboard.css"

    rows = traitlets.List(traitlets.Dict(), help="joined rows (see join()), each with its cells as written "
                                                 "(cells)").tag(sync=True)
    columns = traitlets.List(traitlets.Dict(), help="the table's columns, in order: key, title, align, unit and "
                                                    "doc (what the figure is: hfmagic.core.records)").tag(sync=True)
    fields = traitlets.Dict(help="key -> {title, unit, doc} of every figure the page writes (columns, tooltips, "
                                 "the chart's axes)").tag(sync=True)
    chart_x = traitlets.List(traitlets.Unicode(), help="the keys the chart may put on its x axis").tag(sync=True)
    selected = traitlets.List(traitlets.Unicode(), help="ids of the rows selected in the browser").tag(sync=True)
    baseline = traitlets.Unicode("", help="model/variant/backend the speed-up column is relative to (variant/backend "
                                          "where one model is shown)").tag(sync=True)
    baselines = traitlets.List(traitlets.Unicode(), help="what the baseline may be: every measured "
                                                         "model/variant/backend").tag(sync=True)
    speedups = traitlets.Dict(help="baseline -> row id -> {value, low, high, trust, text, why}: the speed-up "
                                   "column and chart for that baseline (speedup_cells)").tag(sync=True)
    speedup_notes = traitlets.Dict(help="baseline -> how its speed-ups were computed and why rows have none"
                                   ).tag(sync=True)
    sweep_baseline = traitlets.Unicode("", help="the benchmark's own baseline").tag(sync=True)
    progress = traitlets.Dict(help="{done, total, label} while a run is going; empty when none").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    metric_lower = traitlets.Bool(False, help="the metric is better lower (perplexity): the Pareto front "
                                  "takes the lowest").tag(sync=True)
    notes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    warnings = traitlets.List(traitlets.Unicode(), help="what must not be missed (evaluations of different "
                                                        "data), shown above the table").tag(sync=True)

    def __init__(self, *results: Any, baseline: str | None = None, title: str | None = None, **kwargs):
        for result in results:  # before the widget (its comm) exists
            _rows_of(result)
        super().__init__(**kwargs)
        self._bench: dict[tuple, dict] = {}
        self._eval: dict[tuple, dict] = {}
        self._full: list[dict] = []  # the benchmark rows with their raw samples, as shown (ids)
        self._columns: list[Column] = []  # the columns shown, as _refresh titles them
        self._metric: str | None = None
        self._sweeps: dict[str, str] = {}  # a benchmark's rows' sweep -> the baseline it measured against
        self._first_sweep: str | None = None
        self._added = 0
        self._titles: list[str] = []
        self._data: dict[str, str] = {}  # the evaluations' data: sha256[:12] -> its source
        for result in results:
            self.add(result)
        if baseline:
            self.baseline = baseline
        if title:
            self.title = title

    # -- adding data ---------------------------------------------------------------------------
    def add(self, result: Any) -> "Dashboard":
        """Add a benchmark or evaluation result (or a list of its rows), of any model; returns self."""
        rows = _rows_of(result)
        kind = _kind(rows)
        self._added += 1
        sweep = str(getattr(result, "run_id", None) or f"result {self._added}")
        rows = [self._own(r, kind, result, sweep) for r in rows]
        if kind == "benchmark":
            own = _canonical(getattr(result, "baseline", None), rows) or own_baseline(rows)
            if own:
                self._sweeps[sweep] = own
                self._first_sweep = self._first_sweep or own
        if kind == "evaluation":
            self._metric = self._metric or _metric_of(result, rows)
            self.metric_lower = self.metric_lower or bool(getattr(result, "lower_is_better", False))
        store = self._bench if kind == "benchmark" else self._eval
        replaced = [r for r in rows if self._key(r, kind) in store]
        for r in rows:
            store[self._key(r, kind)] = r
        notes = [f"{kind}: {n}" for n in getattr(result, "notes", [])]
        if replaced:
            notes.append(f"{len(replaced)} {kind} rows replaced earlier ones with the same "
                         f"model/variant{'/backend/node/shape' if kind == 'benchmark' else ''}")
        self.notes = [*self.notes, *notes]
        title = getattr(result, "title", None) or (result.table().title if hasattr(result, "table") else "")
        if title:  # the dashboard's baseline selector says what speed-ups are against
            self._titles.append(re.sub(r"\s*\(speed-up vs [^)]*\)", "", title))
        self.title = " + ".join(dict.fromkeys(self._titles))
        self._refresh()
        return self

    def _own(self, row: dict, kind: str, result: Any = None, sweep: str = "live") -> dict:
        """A copy of ``row`` that names its model, and the measurement it came from (a benchmark's)
        or its data and whether it is the reference (an evaluation's)."""
        name, sha = model_of(row, getattr(result, "model_name", None), getattr(result, "weights_sha256", None))
        own = {**row, "model": name, "model_sha": sha}
        if kind == "benchmark":
            own["sweep"] = sweep
        else:
            fingerprint = getattr(result, "fingerprint", None) or {}
            data = row.get("data_sha") or str(fingerprint.get("sha256") or "")[:12] or None
            if data:
                self._data.setdefault(data, str(getattr(result, "data_source", None) or fingerprint.get("source")
                                                or "data"))
            reference = getattr(result, "reference", None)
            own.update(data_sha=data, is_reference=bool(row.get("is_reference")) or reference is not None
                       and reference in (row["variant"], f"{name}/{row['variant']}"))
        return own

    def add_row(self, row: dict) -> None:
        """Add (or replace) one finished row as a run streams it."""
        kind = _kind([row])
        row = self._own(row, kind)
        (self._bench if kind == "benchmark" else self._eval)[self._key(row, kind)] = row
        if kind == "benchmark" and "live" not in self._sweeps and own_baseline([row]):
            self._sweeps["live"] = own_baseline([row])
        self._refresh()

    def set_progress(self, done: int, total: int, label: str = "") -> None:
        """Show a run's progress."""
        self.progress = {"done": done, "total": total, "label": label}

    def finish(self, result: Any) -> None:
        """A streamed run ended: replace its rows by the result's (skipped ones included), drop progress."""
        kind = _kind(list(getattr(result, "rows", [])))
        (self._bench if kind == "benchmark" else self._eval).clear()
        self._sweeps.pop("live", None)
        self.add(result)
        self.progress = {}

    @staticmethod
    def _key(row: dict, kind: str) -> tuple:
        model = (row.get("model"), row.get("model_sha"))
        if kind == "benchmark":
            return *model, row["variant"], row.get("backend"), where(row), *shape_of(row)
        return *model, row["variant"]

    @traitlets.validate("baseline")
    def _check_baseline(self, proposal) -> str:
        """``variant/backend`` is taken where one model is shown; a baseline no row has is one line."""
        value = proposal["value"]
        found = _canonical(value, self.rows)
        if value and self.baselines and found not in self.baselines:
            raise DashboardError(f"baseline {value!r} names no measured row; choose one of "
                                 f"{', '.join(sorted(self.baselines))}")
        return found or value

    @traitlets.observe("baseline")
    def _baseline_changed(self, change) -> None:
        """The browser (or Python) chose a baseline: its speed-ups are computed here, once."""
        if change["new"] and change["new"] not in self.speedups:
            self._compute_speedups([change["new"]])

    def _compute_speedups(self, baselines: list[str]) -> None:
        cells, notes = dict(self.speedups), dict(self.speedup_notes)
        for baseline in baselines:
            cells[baseline], notes[baseline] = speedup_cells(self._full, baseline, self._sweeps)
        self.speedup_notes, self.speedups = notes, cells  # the notes first: the cells redraw the view

    def _refresh(self) -> None:
        metric = self._metric
        evals = [{**r, "metric": r.get(metric), "metric_low": r.get(f"{metric}_low"),
                  "metric_high": r.get(f"{metric}_high")} for r in self._eval.values()]
        bench = list(self._bench.values())
        rows = join(bench, evals)
        _tell_apart(rows)
        # join puts the benchmark rows first, in order: their full twins take the ids and names shown
        self._full = [{**b, "id": r["id"], "model": r["model"]} for b, r in zip(bench, rows)]
        pairs = list(dict.fromkeys(pair(r) for r in self._full if measured(r)))
        sweep = self._first_sweep if self._first_sweep in pairs else next(
            (b for b in self._sweeps.values() if b in pairs), "")
        datas = sorted({r["data_sha"] for r in rows if r.get("data_sha")})
        cluster = any(where(r) for r in rows)  # the node column: rows a cluster's nodes measured only
        generation = generating(rows)
        columns = [self._column(c, generation) for c in COLUMNS if c.key != "node" or cluster]
        columns += [DATA_COLUMN] if len(datas) > 1 else []
        for row in rows:
            row["cells"] = {c.key: c.text(row) for c in columns + EXTRA_CELLS if c.key != "speedup"}
            row["shape"] = shape_text(row) if row.get("batch_size") is not None else ""
        self._columns = [c for c in columns if c.key in ALWAYS or c.key == "speedup" and pairs
                         or any(r["cells"].get(c.key) for r in rows)]
        self.fields, self.chart_x = page_fields(columns, rows)
        self.columns = [{**field_of(c.key).describe(), "title": c.heading(), "align": c.align} for c in self._columns]
        self.sweep_baseline = sweep
        self.baselines = pairs
        self.speedups, self.speedup_notes = {}, {}
        self.rows = rows
        baseline = _canonical(self.baseline, rows)
        chosen = baseline if baseline in pairs else sweep or next(iter(pairs), "")
        if chosen != self.baseline:
            self.baseline = chosen  # observed: computes its speed-ups
        elif chosen:
            self._compute_speedups([chosen])
        self.warnings = [_different_data(rows, self._data)] if len(datas) > 1 else []
        # %evaluate runs torch variants on torch and ONNX ones on onnxruntime; other backends'
        # rows show that accuracy, which the same weights should give but nobody measured there
        borrowed = sorted({r["backend"] for r in rows if r.get("metric") is not None
                           and r.get("backend") not in (None, "torch", "onnxruntime")})
        note = (f"accuracy on {', '.join(borrowed)} rows is the variant's accuracy as evaluated on "
                "torch/onnxruntime, not measured on that backend") if borrowed else None
        kept = [n for n in self.notes if not n.startswith(("accuracy on ", "the accuracy of "))]
        self.notes = kept + [n for n in (note, batch_note(rows)) if n]

    def _column(self, column: Column, generation: bool = False) -> Column:
        """A column as this dashboard titles it: the metric under its own name, the gate with its
        limit, a generation's latencies as TPOT's."""
        if generation and column.key in GENERATION_TITLES:
            return field_of(column.key).column(GENERATION_TITLES[column.key])
        if column.key == "metric" and self._metric:
            return field_of("metric").column(self._metric)
        if column.key == "gate":
            return field_of("gate").column(gate_title(self.metric_lower))
        return column

    # -- reading it back -----------------------------------------------------------------------
    @property
    def selected_rows(self) -> list[dict]:
        """The selected rows, in table order."""
        chosen = set(self.selected)
        return [r for r in self.rows if r["id"] in chosen]

    def _cells(self, baseline: str | None = None) -> dict[str, dict]:
        """The speed-up cells against ``baseline`` (default the chosen one)."""
        baseline = baseline or self.baseline
        if baseline and baseline not in self.speedups:
            self._compute_speedups([baseline])
        return self.speedups.get(baseline, {}) if baseline else {}

    def table(self) -> Table:
        """The table as shown (speed-up against the chosen baseline): the same cells, for text, HTML and CSV."""
        speed = self._cells()
        shown = [{**r["cells"], "speedup": (speed.get(r["id"]) or {}).get("text", "")} for r in self.rows]
        columns = [Column(c.key, c.title, None, c.align) for c in self._columns]
        notes = list(self.speedup_notes.get(self.baseline, [])) if self.baseline else []
        return Table(shown, columns, title=self.title, notes=list(self.warnings) + notes + list(self.notes))

    def __str__(self) -> str:
        return str(self.table())

    def _repr_mimebundle_(self, **kwargs):
        """The widget, plus the table as HTML and text for frontends that cannot show widgets."""
        data, metadata = super()._repr_mimebundle_(**kwargs)
        table = self.table()
        data.update({"text/plain": str(table), "text/html": table._repr_html_()})
        return data, metadata

    # -- export --------------------------------------------------------------------------------
    def to_csv(self, path: str | Path) -> Path:
        """Every row with every figure as a number (the speed-up against the chosen baseline, with its
        interval and trust) as CSV."""
        path = Path(path).expanduser()
        speed = self._cells()

        axes = {a.key for a in AXES}  # the size axes no row has (a text sweep's image_size) are left out
        keys = [c.key for c in self._columns if c.key not in ("metric_ci",)
                and (c.key not in axes or any(r.get(c.key) is not None for r in self.rows))]
        keys += [k for k in ("speedup_low", "speedup_high", "speedup_trust", "id", "model_sha", "metric_low",
                             "metric_high", "pct_of_reference", "gate", "data_sha") if k not in keys]
        with writing(path) as f:
            writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            for r in self.rows:
                cell = speed.get(r["id"]) or {}
                writer.writerow({**r, "speedup": cell.get("value"), "speedup_low": cell.get("low"),
                                 "speedup_high": cell.get("high"), "speedup_trust": cell.get("trust")})
        return path

    def state(self) -> dict:
        """What the front end is given (to_html embeds it, with the speed-ups against every baseline the
        page's selector offers)."""
        self._compute_speedups([b for b in self.baselines if b not in self.speedups])
        return {name: getattr(self, name) for name in
                ("rows", "columns", "fields", "chart_x", "selected", "baseline", "baselines", "speedups", "speedup_notes",
                 "sweep_baseline", "progress", "title", "notes", "warnings", "metric_lower")}

    def to_html(self, path: str | Path, title: str | None = None, extra_html: Iterable[str] = ()) -> Path:
        """One self-contained HTML page with this dashboard, interactive offline.

        ``extra_html``: HTML fragments placed after the dashboard (a report's other sections).
        """
        path = Path(path).expanduser()
        title = title or self.title or "hfmagic dashboard"
        page = _PAGE.format(
            title=html.escape(title), css=(_JS_DIR / "dashboard.css").read_text(),
            state=_script_json(self.state()), esm=_script_json((_JS_DIR / "dashboard.js").read_text()),
            table=self.table()._repr_html_(), extra="\n".join(extra_html),
        )
        with writing(path) as f:
            f.write(page)
        return path


def _script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element ("<" escaped, so no "</script>" can end it)."""
    return json.dumps(value, default=str).replace("<", "\\u003c")


# The page: the front end is loaded from its inlined source as a module; the model stand-in gives
# it what anywidget would (get/set/on/off/save_changes), with state kept in the page.
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: var(--jp-layout-color0, #fff);
  color: var(--jp-ui-font-color1, #212121); }}
@media (prefers-color-scheme: dark) {{ :root {{ --jp-layout-color0: #111; --jp-layout-color1: #1b1b1b;
  --jp-layout-color2: #2a2a2a; --jp-ui-font-color1: #e6e6e6; --jp-ui-font-color2: #b0b0b0;
  --jp-border-color1: #555; --jp-border-color2: #3a3a3a; --jp-brand-color1: #64b5f6; }} }}
{css}
</style></head>
<body>
<h1 class="hfm-page-title">{title}</h1>
<div id="hfmagic-dashboard"><noscript>{table}</noscript></div>
{extra}
<script type="application/json" id="hfmagic-state">{state}</script>
<script type="application/json" id="hfmagic-esm">{esm}</script>
<script type="module">
const read = (id) => JSON.parse(document.getElementById(id).textContent);
const state = read("hfmagic-state");
const listeners = {{}};
const model = {{
  get: (key) => state[key],
  set(key, value) {{ state[key] = value; (listeners["change:" + key] || []).forEach((f) => f()); }},
  on(event, f) {{ (listeners[event] ||= []).push(f); }},
  off(event, f) {{ listeners[event] = (listeners[event] || []).filter((g) => g !== f); }},
  save_changes() {{}},
  send() {{}},
}};
const url = URL.createObjectURL(new Blob([read("hfmagic-esm")], {{ type: "text/javascript" }}));
const widget = (await import(url)).default;
widget.render({{ model, el: document.getElementById("hfmagic-dashboard") }});
</script>
</body></html>
"""
