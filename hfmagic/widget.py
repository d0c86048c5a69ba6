"""The dashboard: benchmark and evaluation results in one interactive view (an anywidget).

``Dashboard(*results)`` joins benchmark rows (one per model x variant x backend x shape) with
evaluation rows (one per model x variant) by model and variant, and syncs them to
``js/dashboard.js``: a sortable, filterable table with a baseline selector, a latency-against-accuracy
scatter (marker area from the size on disk, colour by model) with its Pareto front across all models,
and a speed-up bar chart. Results of several models go in one dashboard: every row carries its
model's name and weights hash (``model``, ``model_sha``), from the row itself or, for rows that
predate them, from the result (or recorded run) they came from. Selecting rows in the browser sets
``selected`` here. The speed-up column and the Pareto front are computed in the browser;
:func:`speedups`, :func:`pareto_front` and :func:`row_id` are the same rules in Python (to_csv,
to_html's fallback table and the tests use them).

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
from hfmagic.results import Column, Table, shape_of

_HERE = Path(__file__).resolve().parent
# an installed wheel carries js/ inside the package (pyproject's package-dir maps hfmagic.js to js/);
# a source checkout has it next to the package
_JS_DIR = next((d for d in (_HERE / "js", _HERE.parent / "js") if (d / "dashboard.js").is_file()),
               _HERE.parent / "js")

# the table's columns, in order (nbformat sorts dict keys, so the order travels separately).
# fmt: digits after the point, "int", "x" (a ratio), "signed%" (a change in percent), "%" (a share)
COLUMNS = [
    {"key": "model", "title": "model"}, {"key": "variant", "title": "variant"}, {"key": "backend", "title": "backend"},
    {"key": "node", "title": "node"},  # where it ran: "local", or a cluster's kind of node (--on each)
    {"key": "batch_size", "title": "batch", "fmt": "int"}, {"key": "seq_len", "title": "seq", "fmt": "int"},
    {"key": "image_size", "title": "image px", "fmt": "int"}, {"key": "audio_seconds", "title": "audio s", "fmt": "int"},
    {"key": "p50_ms", "title": "p50 ms", "fmt": 2}, {"key": "p95_ms", "title": "p95 ms", "fmt": 2},
    {"key": "speedup", "title": "speed-up", "fmt": "x"}, {"key": "samples_per_s", "title": "samples/s", "fmt": 1},
    {"key": "rtf", "title": "RTF", "fmt": 4},  # speech rows: seconds of compute per second of audio
    {"key": "metric", "title": "accuracy", "fmt": 4}, {"key": "change_pct", "title": "vs ref", "fmt": "signed%"},
    {"key": "peak_mem_mb", "title": "peak MB", "fmt": 0}, {"key": "size_mb", "title": "size MB", "fmt": 1},
    {"key": "agreement", "title": "agreement", "fmt": "%"}, {"key": "status", "title": "status"},
]
DATA_COLUMN = {"key": "data_sha", "title": "data"}  # shown when evaluations were of different data
_BENCH_KEYS = ("model", "model_sha", "variant", "backend", "node", "hardware", "batch_size", "seq_len", "image_size", "audio_seconds", "status", "p50_ms", "p95_ms", "samples_per_s",
               "peak_mem_mb", "size_mb", "speedup_measured", "speedup_low", "speedup_high", "rtf",
               "new_tokens", "ttft_p50_ms", "tpot_p50_ms")  # a generation's: p50_ms is its TPOT
_EVAL_KEYS = ("metric", "metric_low", "metric_high", "pct_of_reference", "change_pct", "gate", "agreement",
              "eval_status", "data_sha", "eval_batch_size", "batch_dependent")


# -- the rules the browser applies, in Python ------------------------------------------------------

def model_of(row: dict, name: str | None = None, sha: str | None = None) -> tuple[str | None, str | None]:
    """(name, first 12 hex digits of the weights sha256) of a row's model: the row's own ``model``
    and ``model_sha``, else ``name``/``sha`` (the result's ``model_name``/``weights_sha256``, or a
    recorded run's provenance) for rows that predate them. A row naming another model than the
    fallback one keeps no fallback hash."""
    own = row.get("model")
    model = own or name
    model_sha = row.get("model_sha") or ((sha or "")[:12] if own in (None, name) else "") or None
    return model, model_sha


def pair(row: dict) -> str:
    """``model/variant/backend`` (``variant/backend`` for a row that names no model): what a
    baseline names."""
    prefix = f"{row['model']}/" if row.get("model") else ""
    return f"{prefix}{row['variant']}/{row.get('backend')}"


def where(row: dict) -> str:
    """``@node`` for a row a cluster's node measured (``--on each`` gives one per kind), else ``""``."""
    node = row.get("node")
    return f"@{node}" if node and node != "local" else ""


def row_id(row: dict) -> str:
    """``model/variant/backend[@node]/BxS`` for a benchmark row, ``model/variant/eval`` for an
    evaluated-only variant (without ``model/`` for a row that names no model)."""
    if row.get("batch_size") is None:
        prefix = f"{row['model']}/" if row.get("model") else ""
        return f"{prefix}{row['variant']}/eval"
    return f"{pair(row)}{where(row)}/{'x'.join(map(str, shape_of(row)))}"


def same_model(a: dict, b: dict) -> bool:
    """Two rows are of one model when their weights hashes agree, or, where one has none, their names."""
    if a.get("model_sha") and b.get("model_sha"):
        return a["model_sha"] == b["model_sha"]
    return a.get("model") == b.get("model")


def _ok(row: dict) -> bool:
    return row.get("status") == "ok" and row.get("p50_ms") is not None


def speedups(rows: list[dict], baseline: str | None, sweep: str | None = None) -> dict[str, float | None]:
    """Row id -> p50 of the baseline (``model/variant/backend``) row of the same shape, measured on
    the same node, over this row's p50, whichever model the row is of. Against the sweep's own
    baseline (``sweep``), the speed-up the sweep measured (paired by round when its rounds were
    interleaved)."""
    if baseline and baseline == sweep and any(r.get("speedup_measured") is not None for r in rows):
        return {r["id"]: r.get("speedup_measured") if _ok(r) else None for r in rows}
    base = {(shape_of(r), where(r)): r["p50_ms"] for r in rows
            if _ok(r) and pair(r) == baseline and r["p50_ms"] > 0}
    out = {}
    for r in rows:
        ref = base.get((shape_of(r), where(r)))
        out[r["id"]] = ref / r["p50_ms"] if ref and _ok(r) and r["p50_ms"] > 0 else None
    return out


def pareto_front(points: list[dict], lower_is_better: bool = False, x: str = "p50_ms") -> list[str]:
    """Ids of the points no other point beats on both lower ``x`` (p50; a generation's TTFT with
    ``x="ttft_p50_ms"``) and a better metric (higher; lower with ``lower_is_better``, as
    perplexity) (ties: the first)."""
    sign = -1.0 if lower_is_better else 1.0
    ordered = sorted((p for p in points if p.get(x) is not None and p.get("metric") is not None),
                     key=lambda p: (p[x], -sign * p["metric"]))
    front, best = [], float("-inf")
    for p in ordered:
        if sign * p["metric"] > best:
            front.append(p["id"])
            best = sign * p["metric"]
    return front


def join(bench_rows: list[dict], eval_rows: list[dict], reference: str | None = None) -> list[dict]:
    """Dashboard rows: each benchmark row with the evaluation figures of the same model's same
    variant (``metric`` is the evaluation's first metric; ``change_pct`` its change against the
    reference, in percent), then one row for each evaluated variant that was not benchmarked.
    ``reference``: the variant (or ``model/variant``) whose gate reads "reference", besides the
    evaluation rows marked ``is_reference``."""

    def figures(e: dict) -> dict:
        pct = e.get("pct_of_reference")
        is_ref = e.get("is_reference") or reference in (e["variant"], f"{e.get('model')}/{e['variant']}")
        return {
            "metric": e.get("metric"), "metric_low": e.get("metric_low"), "metric_high": e.get("metric_high"),
            "pct_of_reference": pct, "change_pct": None if pct is None else pct - 100.0,
            "gate": "reference" if is_ref and e.get("status") == "ok" else e.get("gate"),
            "agreement": e.get("agreement"), "eval_status": e.get("status"), "data_sha": e.get("data_sha"),
            "eval_batch_size": e.get("batch_size"), "batch_dependent": e.get("batch_dependent"),
        }

    def evaluation_of(b: dict) -> dict | None:
        return next((e for e in eval_rows if e["variant"] == b["variant"] and same_model(e, b)), None)

    rows, joined = [], set()
    for b in bench_rows:
        row = {k: b.get(k) for k in _BENCH_KEYS}
        row["speedup_measured"] = b.get("speedup")  # the sweep's own figure (paired by round when interleaved)
        e = evaluation_of(b)
        row.update(figures(e) if e else dict.fromkeys(_EVAL_KEYS))
        joined.add(id(e))
        rows.append(row)
    for e in eval_rows:
        if id(e) not in joined:
            rows.append({**dict.fromkeys(_BENCH_KEYS), "model": e.get("model"), "model_sha": e.get("model_sha"),
                         "variant": e["variant"], "status": e.get("status"), **figures(e)})
    for row in rows:
        for key, value in row.items():  # NaN is no JSON: the page and the comm would fail on it
            if isinstance(value, float) and not math.isfinite(value):
                row[key] = None
        row["id"] = row_id(row)
        if row["status"] == "ok" and row.get("eval_status") not in (None, "ok"):
            row["status"] = f"evaluation {row['eval_status']}"
    return rows


def batch_note(rows: list[dict]) -> str | None:
    """What the rows of a batch-dependent variant (dynamic int8) at another batch size than its
    evaluation's show: that evaluation's accuracy, not one measured at their batch."""
    from hfmagic.variants import BATCH_DEPENDENT_WHY

    moved = {f"{r['model']}/{r['variant']}" if r.get("model") else r["variant"]: r["eval_batch_size"] for r in rows
             if r.get("batch_dependent") and r.get("batch_size") not in (None, r.get("eval_batch_size"))}
    if not moved:
        return None
    return (f"the accuracy of {', '.join(f'{k} (scored at batch {b})' for k, b in moved.items())} depends on the "
            f"batch it runs in ({BATCH_DEPENDENT_WHY}): its rows at other batch sizes show that accuracy, not "
            "one measured at theirs")


class DashboardError(UsageProblem):
    """What the dashboard was given cannot be shown (not a result; a baseline no row has)."""


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
    """A benchmark row times (it has ``p50_ms``, None where it failed); an evaluation row, which
    says its batch size too, never does."""
    return "benchmark" if any("p50_ms" in r for r in rows) else "evaluation"


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
    later result's row with the same model, variant, backend and shape as an earlier one replaces it
    (a note says so); evaluations of different data are flagged in ``warnings``.
    """

    _esm = _JS_DIR / "dashboard.js"
    _css = _JS_DIR / "dashboard.css"

    rows = traitlets.List(traitlets.Dict(), help="joined rows (see join())").tag(sync=True)
    columns = traitlets.List(traitlets.Dict(), help="the table's columns, in order").tag(sync=True)
    selected = traitlets.List(traitlets.Unicode(), help="ids of the rows selected in the browser").tag(sync=True)
    baseline = traitlets.Unicode("", help="model/variant/backend the speed-up column is relative to (variant/backend "
                                          "where one model is shown)").tag(sync=True)
    sweep_baseline = traitlets.Unicode("", help="the benchmark's own baseline (its rows carry a CI)").tag(sync=True)
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
        self._metric: str | None = None
        self._sweep: str | None = None  # the baseline a benchmark result says it used
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
        rows = [self._own(r, kind, result) for r in rows]
        if kind == "benchmark":
            self._sweep = _canonical(getattr(result, "baseline", None), rows) or self._sweep
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
                         f"model/variant{'/backend/shape' if kind == 'benchmark' else ''}")
        self.notes = [*self.notes, *notes]
        title = getattr(result, "title", None) or (result.table().title if hasattr(result, "table") else "")
        if title:  # the dashboard's baseline selector says what speed-ups are against
            self._titles.append(re.sub(r"\s*\(speed-up vs [^)]*\)", "", title))
        self.title = " + ".join(dict.fromkeys(self._titles))
        self._refresh()
        return self

    def _own(self, row: dict, kind: str, result: Any = None) -> dict:
        """A copy of ``row`` that names its model (and, for an evaluation, its data and whether it is
        the reference)."""
        name, sha = model_of(row, getattr(result, "model_name", None), getattr(result, "weights_sha256", None))
        own = {**row, "model": name, "model_sha": sha}
        if kind == "evaluation":
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
    def _key(row: dict, kind: str) -> tuple:
        model = row.get("model_sha") or row.get("model")
        if kind == "benchmark":
            return model, row["variant"], row.get("backend"), *shape_of(row)
        return model, row["variant"]

    @traitlets.validate("baseline")
    def _check_baseline(self, proposal) -> str:
        """``variant/backend`` is taken where one model is shown; a baseline no row has is one line."""
        value = proposal["value"]
        pairs = {pair(r) for r in self.rows if _ok(r)}
        found = _canonical(value, self.rows)
        if value and pairs and found not in pairs:
            raise DashboardError(f"baseline {value!r} names no measured row; choose one of "
                                 f"{', '.join(sorted(pairs))}")
        return found or value

    def _refresh(self) -> None:
        metric = self._metric
        evals = [{**r, "metric": r.get(metric), "metric_low": r.get(f"{metric}_low"),
                  "metric_high": r.get(f"{metric}_high")} for r in self._eval.values()]
        rows = join(list(self._bench.values()), evals)
        _tell_apart(rows)
        # the result says which baseline it used; rows alone (live, or read back from the run
        # store) are recognised by the baseline's exact [1, 1] interval
        pairs = [pair(r) for r in rows if _ok(r)]
        sweep = self._sweep if self._sweep in pairs else next(
            (pair(r) for r in rows if r.get("speedup_low") == 1.0 and r.get("speedup_high") == 1.0 and _ok(r)), "")
        self.sweep_baseline = sweep
        datas = sorted({r["data_sha"] for r in rows if r.get("data_sha")})
        cluster = any(where(r) for r in rows)  # the node column: rows a cluster's nodes measured only
        self.columns = [{**c, "title": metric} if c["key"] == "metric" and metric else c for c in COLUMNS
                        if c["key"] != "node" or cluster] + ([DATA_COLUMN] if len(datas) > 1 else [])
        baseline = _canonical(self.baseline, rows)
        self.rows = rows
        self.baseline = baseline if baseline in pairs else sweep or next(iter(pairs), "")
        self.warnings = [_different_data(rows, self._data)] if len(datas) > 1 else []
        # %evaluate runs torch variants on torch and ONNX ones on onnxruntime; other backends'
        # rows show that accuracy, which the same weights should give but nobody measured there
        borrowed = sorted({r["backend"] for r in rows if r.get("metric") is not None
                           and r.get("backend") not in (None, "torch", "onnxruntime")})
        note = (f"accuracy on {', '.join(borrowed)} rows is the variant's accuracy as evaluated on "
                "torch/onnxruntime, not measured on that backend") if borrowed else None
        kept = [n for n in self.notes if not n.startswith(("accuracy on ", "the accuracy of "))]
        self.notes = kept + [n for n in (note, batch_note(rows)) if n]

    # -- reading it back -----------------------------------------------------------------------
    @property
    def selected_rows(self) -> list[dict]:
        """The selected rows, in table order."""
        chosen = set(self.selected)
        return [r for r in self.rows if r["id"] in chosen]

    def table(self) -> Table:
        """The table as shown (speed-up against the chosen baseline), for text, HTML and CSV."""
        ratio = speedups(self.rows, self.baseline, self.sweep_baseline)
        fmts = {"int": "d", "x": lambda v: f"{v:.2f}x", "signed%": lambda v: f"{v:+.2f}%", "%": ".2%"}
        columns = [Column(c["key"], c["title"], fmts.get(c.get("fmt"), f".{c['fmt']}f" if "fmt" in c else None),
                          "left" if "fmt" not in c else "right") for c in self.columns]
        shown = [{**r, "speedup": ratio[r["id"]]} for r in self.rows]
        used = [c for c in columns if any(r.get(c.key) is not None for r in shown)]
        notes = [f"speed-up: p50 of {self.baseline} at the same shape over the row's p50"] if self.baseline else []
        return Table(shown, used, title=self.title, notes=list(self.warnings) + notes + list(self.notes))

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
        ratio = speedups(self.rows, self.baseline, self.sweep_baseline)
        from hfmagic.tasks.base import AXES

        axes = {a.key for a in AXES}  # the size axes no row has (a text sweep's image_size) are left out
        keys = [c["key"] for c in self.columns if c["key"] not in axes or any(r.get(c["key"]) is not None
                                                                               for r in self.rows)]
        keys += [k for k in ("id", "model_sha", "metric_low", "metric_high", "pct_of_reference", "gate", "data_sha")
                 if k not in keys]
        with writing(path) as f:
            writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({**r, "speedup": ratio[r["id"]]} for r in self.rows)
        return path

    def state(self) -> dict:
        """What the front end is given (to_html embeds it)."""
        return {name: getattr(self, name) for name in
                ("rows", "columns", "selected", "baseline", "sweep_baseline", "progress", "title", "notes",
                 "warnings")}

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
