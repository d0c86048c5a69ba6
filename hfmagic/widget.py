"""The dashboard: benchmark and evaluation results in one interactive view (an anywidget).

``Dashboard(*results)`` joins benchmark rows (one per variant x backend x shape) with evaluation
rows (one per variant) by variant, and syncs them to ``js/dashboard.js``: a sortable, filterable
table with a baseline selector, a latency-against-accuracy scatter with its Pareto front, and a
speed-up bar chart. Selecting rows in the browser sets ``selected`` here. The speed-up column and
the Pareto front are computed in the browser; :func:`speedups` and :func:`pareto_front` are the
same rules in Python (to_csv, to_html's fallback table and the tests use them).

``to_html(path)`` writes one self-contained page (the same ES module, its data and a small model
stand-in inlined) that stays interactive offline; ``to_csv(path)`` writes the table.
"""

from __future__ import annotations

import csv
import html
import json
import math
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

import anywidget
import traitlets

from hfmagic.errors import UsageProblem
from hfmagic.results import Column, Table

_HERE = Path(__file__).resolve().parent
# an installed wheel carries js/ inside the package (pyproject's package-dir maps hfmagic.js to js/);
# a source checkout has it next to the package
_JS_DIR = next((d for d in (_HERE / "js", _HERE.parent / "js") if (d / "dashboard.js").is_file()),
               _HERE.parent / "js")

# the table's columns, in order (nbformat sorts dict keys, so the order travels separately).
# fmt: digits after the point, "int", "x" (a ratio), "signed%" (a change in percent), "%" (a share)
COLUMNS = [
    {"key": "variant", "title": "variant"}, {"key": "backend", "title": "backend"},
    {"key": "batch_size", "title": "batch", "fmt": "int"}, {"key": "seq_len", "title": "seq", "fmt": "int"},
    {"key": "p50_ms", "title": "p50 ms", "fmt": 2}, {"key": "p95_ms", "title": "p95 ms", "fmt": 2},
    {"key": "speedup", "title": "speed-up", "fmt": "x"}, {"key": "samples_per_s", "title": "samples/s", "fmt": 1},
    {"key": "metric", "title": "accuracy", "fmt": 4}, {"key": "change_pct", "title": "vs ref", "fmt": "signed%"},
    {"key": "peak_mem_mb", "title": "peak MB", "fmt": 0}, {"key": "size_mb", "title": "size MB", "fmt": 1},
    {"key": "agreement", "title": "agreement", "fmt": "%"}, {"key": "status", "title": "status"},
]
_BENCH_KEYS = ("variant", "backend", "batch_size", "seq_len", "status", "p50_ms", "p95_ms", "samples_per_s",
               "peak_mem_mb", "size_mb", "speedup_low", "speedup_high")
_EVAL_KEYS = ("metric", "metric_low", "metric_high", "pct_of_reference", "change_pct", "gate", "agreement",
              "eval_status")


# -- the rules the browser applies, in Python ------------------------------------------------------

def row_id(row: dict) -> str:
    """``variant/backend/BxS`` for a benchmark row, ``variant/eval`` for an evaluated-only variant."""
    if row.get("batch_size") is None:
        return f"{row['variant']}/eval"
    return f"{row['variant']}/{row['backend']}/{row['batch_size']}x{row['seq_len']}"


def _ok(row: dict) -> bool:
    return row.get("status") == "ok" and row.get("p50_ms") is not None


def speedups(rows: list[dict], baseline: str | None) -> dict[str, float | None]:
    """Row id -> p50 of the baseline (``variant/backend``) row of the same shape over this row's p50."""
    base = {(r["batch_size"], r["seq_len"]): r["p50_ms"] for r in rows
            if _ok(r) and f"{r['variant']}/{r['backend']}" == baseline and r["p50_ms"] > 0}
    out = {}
    for r in rows:
        ref = base.get((r.get("batch_size"), r.get("seq_len")))
        out[r["id"]] = ref / r["p50_ms"] if ref and _ok(r) and r["p50_ms"] > 0 else None
    return out


def pareto_front(points: list[dict]) -> list[str]:
    """Ids of the points no other point beats on both lower p50 and higher metric (ties: the first)."""
    ordered = sorted((p for p in points if p.get("p50_ms") is not None and p.get("metric") is not None),
                     key=lambda p: (p["p50_ms"], -p["metric"]))
    front, best = [], float("-inf")
    for p in ordered:
        if p["metric"] > best:
            front.append(p["id"])
            best = p["metric"]
    return front


def join(bench_rows: list[dict], eval_rows: list[dict], reference: str | None = None) -> list[dict]:
    """Dashboard rows: each benchmark row with its variant's evaluation figures (``metric`` is the
    evaluation's first metric; ``change_pct`` its change against the reference, in percent), then one
    row for each evaluated variant that was not benchmarked."""
    figures = {}
    for e in eval_rows:
        pct = e.get("pct_of_reference")
        figures[e["variant"]] = {
            "metric": e.get("metric"), "metric_low": e.get("metric_low"), "metric_high": e.get("metric_high"),
            "pct_of_reference": pct, "change_pct": None if pct is None else pct - 100.0,
            "gate": "reference" if e["variant"] == reference and e.get("status") == "ok" else e.get("gate"),
            "agreement": e.get("agreement"), "eval_status": e.get("status"),
        }
    rows = []
    for b in bench_rows:
        row = {k: b.get(k) for k in _BENCH_KEYS}
        row.update(figures.get(b["variant"], dict.fromkeys(_EVAL_KEYS)))
        rows.append(row)
    benchmarked = {b["variant"] for b in bench_rows}
    for e in eval_rows:
        if e["variant"] not in benchmarked:
            rows.append({**dict.fromkeys(_BENCH_KEYS), "variant": e["variant"], "status": e.get("status"),
                         **figures[e["variant"]]})
    for row in rows:
        for key, value in row.items():  # NaN is no JSON: the page and the comm would fail on it
            if isinstance(value, float) and not math.isfinite(value):
                row[key] = None
        row["id"] = row_id(row)
        if row["status"] == "ok" and row.get("eval_status") not in (None, "ok"):
            row["status"] = f"evaluation {row['eval_status']}"
    return rows


class DashboardError(UsageProblem):
    """What the dashboard was given cannot be shown (not a result; results of two models)."""


def _rows_of(result: Any) -> list[dict]:
    """The rows of a result the dashboard takes; anything else is one line saying what it takes."""
    rows = result if isinstance(result, (list, tuple)) else getattr(result, "rows", None)
    if isinstance(rows, (list, tuple)) and all(isinstance(r, dict) and "variant" in r for r in rows):
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


def _kind(rows: list[dict]) -> str:
    return "benchmark" if any("batch_size" in r for r in rows) else "evaluation"


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
    """Benchmark and/or evaluation results of the same model in one interactive view.

    ``Dashboard(bench, ev, baseline="torch/torch")``: any number of results (objects with ``.rows``
    as ``benchmark()`` and ``evaluate()`` return, or lists of such rows). A later result's row with
    the same id as an earlier one replaces it (a note says so).
    """

    _esm = _JS_DIR / "dashboard.js"
    _css = _JS_DIR / "dashboard.css"

    rows = traitlets.List(traitlets.Dict(), help="joined rows (see join())").tag(sync=True)
    columns = traitlets.List(traitlets.Dict(), help="the table's columns, in order").tag(sync=True)
    selected = traitlets.List(traitlets.Unicode(), help="ids of the rows selected in the browser").tag(sync=True)
    baseline = traitlets.Unicode("", help="variant/backend the speed-up column is relative to").tag(sync=True)
    sweep_baseline = traitlets.Unicode("", help="the benchmark's own baseline (its rows carry a CI)").tag(sync=True)
    progress = traitlets.Dict(help="{done, total, label} while a run is going; empty when none").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    notes = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(self, *results: Any, baseline: str | None = None, title: str | None = None, **kwargs):
        for result in results:  # before the widget (its comm) exists
            _rows_of(result)
        super().__init__(**kwargs)
        self._bench: dict[str, dict] = {}
        self._eval: dict[str, dict] = {}
        self._metric: str | None = None
        self._reference: str | None = None
        self._sweep: str | None = None  # the baseline a benchmark result says it used
        self._titles: list[str] = []
        self._weights: tuple[str, str] | None = None  # (weights sha256, the result that set it)
        for result in results:
            self.add(result)
        if baseline:
            self.baseline = baseline
        if title:
            self.title = title

    # -- adding data ---------------------------------------------------------------------------
    def add(self, result: Any) -> "Dashboard":
        """Add a benchmark or evaluation result (or a list of its rows); returns self."""
        rows = _rows_of(result)
        kind = _kind(rows)
        self._check_same_model(result, kind)
        if kind == "benchmark":
            self._sweep = getattr(result, "baseline", None) or self._sweep
        if kind == "evaluation":
            self._metric = self._metric or _metric_of(result, rows)
            self._reference = getattr(result, "reference", None) or self._reference
        store = self._bench if kind == "benchmark" else self._eval
        replaced = [r for r in rows if self._key(r, kind) in store]
        for r in rows:
            store[self._key(r, kind)] = r
        notes = [f"{kind}: {n}" for n in getattr(result, "notes", [])]
        if replaced:
            notes.append(f"{len(replaced)} {kind} rows replaced earlier ones with the same variant/backend/shape")
        self.notes = [*self.notes, *notes]
        title = getattr(result, "title", None) or (result.table().title if hasattr(result, "table") else "")
        if title:  # the dashboard's baseline selector says what speed-ups are against
            self._titles.append(re.sub(r"\s*\(speed-up vs [^)]*\)", "", title))
        self.title = " + ".join(dict.fromkeys(self._titles))
        self._refresh()
        return self

    def _check_same_model(self, result: Any, kind: str) -> None:
        """Rows are matched by variant name, so results of two models would be joined as one."""
        sha = getattr(result, "weights_sha256", None)
        if sha is None:
            return
        if self._weights is None:
            self._weights = (sha, f"the {kind} of {result.model_name}")
        elif sha != self._weights[0]:
            raise DashboardError(f"this {kind} is of {result.model_name}, whose weights differ from those of "
                                 f"{self._weights[1]}; a dashboard shows one model: make one per model")

    def add_row(self, row: dict) -> None:
        """Add (or replace) one finished row as a run streams it."""
        kind = _kind([row])
        (self._bench if kind == "benchmark" else self._eval)[self._key(row, kind)] = row
        self._refresh()

    def set_progress(self, done: int, total: int, label: str = "") -> None:
        """Show a run's progress."""
        self.progress = {"done": done, "total": total, "label": label}

    def finish(self, result: Any) -> None:
        """A streamed run ended: replace its rows by the result's (skipped ones included), drop progress."""
        kind = _kind(list(getattr(result, "rows", [])))
        (self._bench if kind == "benchmark" else self._eval).clear()
        self.add(result)
        self.progress = {}

    @staticmethod
    def _key(row: dict, kind: str) -> str:
        return row_id(row) if kind == "benchmark" else row["variant"]

    def _refresh(self) -> None:
        metric = self._metric
        evals = [{**r, "metric": r.get(metric), "metric_low": r.get(f"{metric}_low"),
                  "metric_high": r.get(f"{metric}_high")} for r in self._eval.values()]
        rows = join(list(self._bench.values()), evals, self._reference)
        # the result says which baseline it used; rows alone (live, or read back from the run
        # store) are recognised by the baseline's exact [1, 1] interval
        pairs = [f"{r['variant']}/{r['backend']}" for r in rows if _ok(r)]
        sweep = self._sweep if self._sweep in pairs else next(
            (f"{r['variant']}/{r['backend']}" for r in rows
             if r.get("speedup_low") == 1.0 and r.get("speedup_high") == 1.0 and _ok(r)), "")
        self.sweep_baseline = sweep
        if not self.baseline or not any(f"{r['variant']}/{r['backend']}" == self.baseline for r in rows):
            first = next((f"{r['variant']}/{r['backend']}" for r in rows if _ok(r)), "")
            self.baseline = sweep or first
        self.columns = [{**c, "title": metric} if c["key"] == "metric" and metric else c for c in COLUMNS]
        self.rows = rows
        # %evaluate runs torch variants on torch and ONNX ones on onnxruntime; other backends'
        # rows show that accuracy, which the same weights should give but nobody measured there
        borrowed = sorted({r["backend"] for r in rows if r.get("metric") is not None
                           and r.get("backend") not in (None, "torch", "onnxruntime")})
        note = (f"accuracy on {', '.join(borrowed)} rows is the variant's accuracy as evaluated on "
                "torch/onnxruntime, not measured on that backend") if borrowed else None
        kept = [n for n in self.notes if not n.startswith("accuracy on ")]
        self.notes = kept + [note] if note else kept

    # -- reading it back -----------------------------------------------------------------------
    @property
    def selected_rows(self) -> list[dict]:
        """The selected rows, in table order."""
        chosen = set(self.selected)
        return [r for r in self.rows if r["id"] in chosen]

    def table(self) -> Table:
        """The table as shown (speed-up against the chosen baseline), for text, HTML and CSV."""
        ratio = speedups(self.rows, self.baseline)
        fmts = {"int": "d", "x": lambda v: f"{v:.2f}x", "signed%": lambda v: f"{v:+.2f}%", "%": ".2%"}
        columns = [Column(c["key"], c["title"], fmts.get(c.get("fmt"), f".{c['fmt']}f" if "fmt" in c else None),
                          "left" if "fmt" not in c else "right") for c in self.columns]
        shown = [{**r, "speedup": ratio[r["id"]]} for r in self.rows]
        used = [c for c in columns if any(r.get(c.key) is not None for r in shown)]
        notes = [f"speed-up: p50 of {self.baseline} at the same shape over the row's p50"] if self.baseline else []
        return Table(shown, used, title=self.title, notes=notes + list(self.notes))

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
        """Every row with every figure (speed-up against the chosen baseline) as CSV."""
        path = Path(path).expanduser()
        ratio = speedups(self.rows, self.baseline)
        keys = [c["key"] for c in self.columns]
        keys += [k for k in ("id", "metric_low", "metric_high", "pct_of_reference", "gate") if k not in keys]
        with writing(path) as f:
            writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({**r, "speedup": ratio[r["id"]]} for r in self.rows)
        return path

    def state(self) -> dict:
        """What the front end is given (to_html embeds it)."""
        return {name: getattr(self, name) for name in
                ("rows", "columns", "selected", "baseline", "sweep_baseline", "progress", "title", "notes")}

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
