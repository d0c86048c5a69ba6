"""What the dashboard shows, computed in Python: its rows (benchmark rows joined to evaluation rows
by model and variant), their ids, their cells written by the text tables' formats, and the speed-up
of every row against any baseline (:func:`speedup_cells`), or why a row has none. The widget
(:mod:`hfmagic.ui.widget`) syncs these to ``js/dashboard.js``; the report's summary uses the same
rules. Nothing here needs a frontend.
"""

from __future__ import annotations

import math

from hfmagic.core import stats
from hfmagic.core.records import columns, field_of
from hfmagic.core.results import batch_label
from hfmagic.core.shapes import shape_key, shape_of
from hfmagic.models.variants import BATCH_DEPENDENT_WHY

# The table's columns, in order, as the records define them (the benchmark and evaluation tables
# write them alike). "speedup" is the chosen baseline's cell (speedup_cells); "metric" is the
# evaluation's first metric, titled with its name, and "gate" is titled with its limit.
COLUMNS = columns("model", "variant", "backend",
                  "node",  # where it ran: "local", or a cluster's kind of node (--on each)
                  "batch_size", "seq_len", "image_size", "audio_seconds", "new_tokens", "p50_ms", "p95_ms", "speedup",
                  "samples_per_s", "rtf",  # speech rows: seconds of compute per second of audio
                  "metric", "metric_ci",
                  "eval_batch",  # "1*": the batch a batch-dependent variant's score is for
                  "pct_of_reference", "gate", "agreement", "peak_mem_mb", "size_mb", "status")
DATA_COLUMN = field_of("data_sha").column()  # shown when evaluations were of different data
EXTRA_CELLS = columns("ttft_p50_ms", "decode_tokens_per_s")  # written for the tooltips and the chart's axis, not a column
ALWAYS = ("variant", "backend", "status")
CHART_X = ("p50_ms",)  # the chart's latency; a generation's rows may put its TTFT there instead
GENERATION_X = ("p50_ms", "ttft_p50_ms", "decode_tokens_per_s")  # shown even where every cell is empty
_BENCH_KEYS = ("model", "model_sha", "variant", "backend", "node", "hardware", "batch_size", "seq_len", "image_size",
               "audio_seconds", "status", "p50_ms", "p95_ms", "samples_per_s", "peak_mem_mb", "size_mb", "rtf",
               "new_tokens", "ttft_p50_ms", "tpot_p50_ms", "decode_tokens_per_s", "sweep",  # a generation's: p50_ms is its TPOT
               "modes_ms", "mode_shares")  # where its runs form two modes: the p50 cell says so
_EVAL_KEYS = ("metric", "metric_low", "metric_high", "metric_ci", "eval_batch", "pct_of_reference", "gate",
              "agreement", "eval_status", "data_sha", "eval_batch_size", "batch_dependent")


# A generation's p50 and p95 are its time per output token's, its speed-up is TPOT's and its shapes'
# sizes are prompts: every view of its rows titles them so (the benchmark table does too).
GENERATION_TITLES = {"seq_len": "prompt", "p50_ms": "TPOT p50 ms", "p95_ms": "TPOT p95 ms",
                     "speedup": "TPOT speed-up [95% CI]"}


def generating(rows: list[dict]) -> bool:
    """Rows of a generation (a decoder's: they have a TTFT)."""
    return any(r.get("ttft_p50_ms") is not None for r in rows)


def page_fields(columns: list, rows: list[dict]) -> tuple[dict, list[str]]:
    """What the page calls each figure it writes (the columns', the tooltips' and the chart's), as
    the records define them, and the keys the chart may put on its x axis. ``columns`` come titled
    as the table titles them (a generation's: :data:`GENERATION_TITLES`)."""
    fields = {c.key: {**field_of(c.key).describe(), "title": c.heading()} for c in columns + EXTRA_CELLS}
    if generating(rows):
        fields["p50_ms"] = {**field_of("tpot_p50_ms").describe(), "key": "p50_ms"}
        fields["seq_len"] = {**fields.get("seq_len", field_of("seq_len").describe()), "title": "prompt"}
    return fields, list(GENERATION_X if generating(rows) else CHART_X)


# -- rows and their ids ------------------------------------------------------------------------------

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
    return f"{pair(row)}{where(row)}/{shape_key(row)}"


def same_model(a: dict, b: dict) -> bool:
    """Two rows are of one model when they name the same model and their weights hashes agree (or
    one has none). Two names for one set of weights (a copied folder loaded under another name)
    are two models: each keeps its own rows."""
    if a.get("model") != b.get("model"):
        return False
    return not (a.get("model_sha") and b.get("model_sha")) or a["model_sha"] == b["model_sha"]


def measured(row: dict) -> bool:
    """A benchmark row that ran and has a latency."""
    return row.get("status") == "ok" and row.get("p50_ms") is not None


def is_benchmark_row(row: dict) -> bool:
    """A benchmark's row (an evaluation's has no latency)."""
    return "p50_ms" in row


# -- speed-ups: computed here, for every view ------------------------------------------------------

def speedup_cells(rows: list[dict], baseline: str | None, own: dict[str, str] | None = None) -> tuple[dict, list[str]]:
    """Each benchmark row's speed-up against ``baseline`` (``model/variant/backend``), and notes on
    how it was computed or why a row has none: ``({row id: cell}, notes)``.

    ``rows`` are full benchmark rows (raw samples kept) with ``id`` and ``sweep`` (which measurement
    they came from); ``own`` maps a sweep to the baseline its speed-ups were measured against. A
    cell is ``{value, low, high, trust, text, why}``: against a sweep's own baseline, the figure it
    measured; against another row of the same sweep, the same rule on the raw samples
    (:func:`hfmagic.core.stats.speedup_of`: what ``--baseline`` would have given); the baseline is
    compared with the row of the same shape measured on the same node. Rows of another sweep get
    no figure: runs measured apart cannot be paired."""
    own = own or {}
    base = {(r.get("sweep"), where(r), shape_of(r)): r for r in rows if measured(r) and pair(r) == baseline}
    elsewhere = {(where(r), shape_of(r)) for r in base.values()}
    cells: dict[str, dict] = {}
    apart, missing, recomputed, as_measured = set(), [], False, set()
    for r in rows:
        if not measured(r):
            continue
        b = base.get((r.get("sweep"), where(r), shape_of(r)))
        if b is None:
            if (where(r), shape_of(r)) in elsewhere:
                apart.add(r.get("sweep"))
                cells[r["id"]] = _cell(None, "measured in another run than the baseline: runs measured apart "
                                             "cannot be paired")
            else:
                missing.append(r["id"])
                cells[r["id"]] = _cell(None, f"{baseline} has no row at this shape"
                                             + (" on this node" if where(r) else ""))
            continue
        if b is r:
            figures = {"speedup": 1.0, "speedup_low": 1.0, "speedup_high": 1.0}
        elif own.get(r.get("sweep")) == baseline and r.get("speedup") is not None:
            figures = r  # the figure the benchmark measured and its table shows
            as_measured.add(r.get("sweep"))
        elif r.get("samples_ms") and b.get("samples_ms"):
            figures = stats.speedup_of(b, r)
            recomputed = True
        else:
            cells[r["id"]] = _cell(None, "its raw samples were not kept, so no speed-up against another baseline")
            continue
        cells[r["id"]] = _cell(figures)
    notes = []
    paired = any(r.get("sample_rounds") for r in rows if r["id"] in cells and cells[r["id"]]["value"] is not None)
    rule = ("paired by round: geometric mean of the per-round ratios of slice medians, 95% interval from "
            "resampled rounds, disturbed rounds left out; 'not trustworthy' where fewer than "
            f"{stats.MIN_CLEAN} clean paired rounds remain" if paired else
            "ratio of medians, baseline over row, with a bootstrap 95% interval")
    if as_measured and not recomputed:
        notes.append(f"speed-up vs {baseline}: as the benchmark measured it ({rule})")
    elif recomputed:
        notes.append(f"speed-up vs {baseline}: computed from the rows' raw samples as the benchmark computes it "
                     f"with --baseline {baseline} ({rule})")
    if apart:
        notes.append(f"no speed-up vs {baseline} for rows measured in another run ({', '.join(sorted(map(str, apart)))}): "
                     "runs measured apart cannot be paired (the machine's speed moves between them); benchmark "
                     "them in one call to compare them")
    if missing:
        notes.append(f"no speed-up where {baseline} has no row of the same shape (and node): {', '.join(missing)}")
    return cells, notes


def _cell(figures: dict | None, why: str | None = None) -> dict:
    if figures is None:
        return {"value": None, "low": None, "high": None, "trust": None, "text": "", "why": why}
    return {"value": figures["speedup"], "low": figures.get("speedup_low"), "high": figures.get("speedup_high"),
            "trust": figures.get("speedup_trust"), "text": stats.speedup_text(figures), "why": None}


def speedups(rows: list[dict], baseline: str | None, own: dict[str, str] | None = None) -> dict[str, float | None]:
    """Row id -> the speed-up's value against ``baseline`` (None where there is none): the figures
    of :func:`speedup_cells`."""
    cells, _ = speedup_cells(rows, baseline, own)
    return {r["id"]: (cells.get(r["id"]) or {}).get("value") for r in rows}


def pareto_front(points: list[dict], lower_is_better: bool = False, x: str = "p50_ms",
                 higher_x: bool = False) -> list[str]:
    """Ids of the points no other point beats on both a better ``x`` (lower: p50, a generation's
    TTFT with ``x="ttft_p50_ms"``; higher with ``higher_x``, as its ``decode_tokens_per_s``) and a
    better metric (higher; lower with ``lower_is_better``, as perplexity) (ties: the first)."""
    sign = -1.0 if lower_is_better else 1.0
    x_sign = -1.0 if higher_x else 1.0
    ordered = sorted((p for p in points if p.get(x) is not None and p.get("metric") is not None),
                     key=lambda p: (x_sign * p[x], -sign * p["metric"]))
    front, best = [], float("-inf")
    for p in ordered:
        if sign * p["metric"] > best:
            front.append(p["id"])
            best = sign * p["metric"]
    return front


def join(bench_rows: list[dict], eval_rows: list[dict], reference: str | None = None) -> list[dict]:
    """Dashboard rows: each benchmark row with the evaluation figures of the same model's same
    variant (``metric`` is the evaluation's first metric, ``metric_ci`` its interval,
    ``pct_of_reference`` and ``gate`` its verdict), then one row for each evaluated variant that was
    not benchmarked. ``reference``: the variant (or ``model/variant``) whose gate reads "reference",
    besides the evaluation rows marked ``is_reference``."""

    def figures(e: dict) -> dict:
        is_ref = e.get("is_reference") or reference in (e["variant"], f"{e.get('model')}/{e['variant']}")
        low, high = e.get("metric_low"), e.get("metric_high")
        return {
            "metric": e.get("metric"), "metric_low": low, "metric_high": high,
            "metric_ci": [low, high] if low is not None and high is not None else None,
            "pct_of_reference": e.get("pct_of_reference"),
            "gate": "reference" if is_ref and e.get("status") == "ok" else e.get("gate"),
            "agreement": e.get("agreement"), "eval_status": e.get("status"), "data_sha": e.get("data_sha"),
            "eval_batch": batch_label(e), "eval_batch_size": e.get("batch_size"),
            "batch_dependent": e.get("batch_dependent"),
        }

    def evaluation_of(b: dict) -> dict | None:
        return next((e for e in eval_rows if e["variant"] == b["variant"] and same_model(e, b)), None)

    rows, joined = [], set()
    for b in bench_rows:
        row = {k: b.get(k) for k in _BENCH_KEYS}
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


def own_baseline(rows: list[dict]) -> str | None:
    """The baseline rows alone (live, or read back from the run store) were measured against: the
    one whose speed-up interval is exactly [1, 1]."""
    return next((pair(r) for r in rows if measured(r) and r.get("speedup_low") == 1.0 and r.get("speedup_high") == 1.0),
                None)


def batch_note(rows: list[dict]) -> str | None:
    """What the rows of a batch-dependent variant (dynamic int8) at another batch size than its
    evaluation's show: that evaluation's accuracy, not one measured at their batch."""

    moved = {f"{r['model']}/{r['variant']}" if r.get("model") else r["variant"]: r["eval_batch_size"] for r in rows
             if r.get("batch_dependent") and r.get("batch_size") not in (None, r.get("eval_batch_size"))}
    if not moved:
        return None
    return (f"the accuracy of {', '.join(f'{k} (scored at batch {b})' for k, b in moved.items())} depends on the "
            f"batch it runs in ({BATCH_DEPENDENT_WHY}): its rows at other batch sizes show that accuracy, not "
            "one measured at theirs")
