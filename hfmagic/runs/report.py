"""``%hfmagic report RUN... --html FILE``: one self-contained offline HTML page of recorded runs.

The page is the dashboard (:meth:`hfmagic.ui.widget.Dashboard.to_html`, which inlines its script and
styles) built from the runs' recorded rows, of one model or several (each row is its model's: the
row's ``model``/``model_sha``, else its run's provenance), followed by: a summary per model and
variant, the runs and the
provenance of their inputs, the optimum-cli command that rebuilds each variant, and the
environment card(s). The rebuild command of a variant is found through its ONNX file's sha256:
the export run that built a file with that hash recorded the command in its row (``cli``).
Nothing on the page refers to anything outside it.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path

from hfmagic.core.config import settings
from hfmagic.core.errors import UsageProblem
from hfmagic.core.records import columns, field_of
from hfmagic.core.results import Column, Table, batch_label
from hfmagic.core.shapes import shape_of, shape_text
from hfmagic.core.stats import modes_note
from hfmagic.runs.compare import flatten
from hfmagic.runs.history import metric_names, reference_of
from hfmagic.store.db import RunStore
from hfmagic.ui.rows import model_of, own_baseline, where
from hfmagic.ui.widget import Dashboard, cannot_write

SUMMARY_COLUMNS = columns("model", "variant", "size_mb", "shape", "p50_ms", "speedup",
                          "metric",  # the evaluation's first metric, titled with its name
                          "metric_ci", "eval_batch", "pct_of_reference", "gate", "status")
SPEEDUP = ("speedup", "speedup_low", "speedup_high", "speedup_trust", "speedup_rounds")  # its cell's figures
MODES = ("modes_ms", "mode_shares")  # the p50 cell's "(2 modes)" and its note


_STYLE = """<style>
.hfm-report { margin: 1.5rem 0; font-size: 13px; }
.hfm-report table { border-collapse: collapse; margin-top: .3rem; }
.hfm-report th, .hfm-report td { padding: 2px 10px; border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.hfm-report td { font-variant-numeric: tabular-nums; vertical-align: top; }
</style>"""


@dataclass
class Recorded:
    """A recorded benchmark or evaluation, shaped as the dashboard takes a live result."""

    rows: list[dict]
    title: str
    notes: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    reference: str | None = None
    model_name: str | None = None  # the run's model, for rows that do not name theirs
    weights_sha256: str | None = None
    fingerprint: dict = field(default_factory=dict)  # an evaluation's data
    data_source: str | None = None
    run_id: str | None = None  # which measurement its rows are: rows of two runs are never paired


def run_model(run: dict) -> tuple[str | None, str | None]:
    """The (name, weights sha256) a run's provenance records; (names, None) for several models."""
    model = (run["provenance"] or {}).get("model") or {}
    if isinstance(model, list):
        return ", ".join(str(m.get("name")) for m in model if isinstance(m, dict)) or None, None
    return model.get("name"), model.get("weights_sha256")


def _recorded(run: dict) -> Recorded:
    params = run["params"] or {}
    name, sha = run_model(run)
    model = name or "?"
    dataset = (run["provenance"] or {}).get("dataset") or {}
    notes = list((run["summary"] or {}).get("notes") or [])
    if run["status"] != "ok":
        notes.insert(0, f"run {run['id']} ended {run['status']}: {len(run['rows'])} rows were committed")
    metrics = metric_names(params, run["rows"]) if run["kind"] == "evaluate" else []
    reference = (reference_of(run) or {}).get("key") if run["kind"] == "evaluate" else None
    return Recorded(run["rows"], f"{run['kind']} of {model} ({run['id']})", notes,
                    [m for m in metrics if m], reference, name, sha,
                    dataset if run["kind"] == "evaluate" else {}, dataset.get("source"), run["id"])


def summary_table(runs: list[dict]) -> Table:
    """One line per model and variant: its size, p50 and speed-up (as its benchmark measured it, with
    its interval or its "not trustworthy") at the smallest shape measured (on the backend first
    measured for it), and its evaluation's first metric with its interval, % of reference and gate.
    Rows are matched to their model by name and weights hash (two names for one set of weights are
    two models, as in the dashboard)."""
    lines: dict[tuple, dict] = {}
    baselines: list[str] = []

    def line(run, row):
        name, sha = model_of(row, *run_model(run))
        key = (name, sha, row["variant"])
        return lines.setdefault(key, {"model": name, "variant": row["variant"], "status": "ok"})

    metric_name = None
    for run in runs:
        for row in run["rows"]:
            if row.get("status") not in (None, "ok"):
                line(run, row)["status"] = f"{run['kind']}: {row['status']}"
        ok = [r for r in run["rows"] if r.get("status") == "ok"]
        if run["kind"] == "export":
            for r in ok:
                line(run, r).setdefault("size_mb", r.get("size_mb"))
        elif run["kind"] == "benchmark" and ok:
            base = own_baseline([{**r, "model": model_of(r, *run_model(run))[0]} for r in ok])
            baselines.append(f"benchmark {run['id']}: against {base}" if base else f"benchmark {run['id']}: none")
            smallest = min((shape_of(r) for r in ok), key=lambda s: (s[0] * s[1], s[0]))
            for r in ok:
                entry = line(run, r)
                if shape_of(r) == smallest and "p50_ms" not in entry:
                    entry.update(shape=f"{r['backend']}{where(r)} {shape_text(r, compact=True)}", p50_ms=r.get("p50_ms"),
                                 **{k: r.get(k) for k in SPEEDUP + MODES})
                    entry.setdefault("size_mb", r.get("size_mb"))
        elif run["kind"] == "evaluate":
            metric = metric_names(run["params"] or {}, run["rows"])[0]
            metric_name = metric_name or metric
            reference = (reference_of(run) or {}).get("key")  # as the run resolved it (tf/sklearn)
            for r in ok:
                entry = line(run, r)
                is_ref = reference in (r["variant"], f"{entry['model']}/{r['variant']}")
                entry.update(metric=r.get(metric), metric_low=r.get(f"{metric}_low"), metric_high=r.get(f"{metric}_high"),
                             eval_batch=batch_label(r), pct_of_reference=r.get("pct_of_reference"),
                             gate=r.get("gate") or ("reference" if is_ref else None))
    shown = [field_of("metric").column(metric_name) if c.key == "metric" and metric_name else c
             for c in SUMMARY_COLUMNS]
    models = list(dict.fromkeys(r["model"] for r in lines.values()))  # in the order the runs name them
    ordered = sorted(lines.values(), key=lambda r: (models.index(r["model"]), r["variant"] != "torch"))
    notes = [f"speed-up: as each benchmark measured it, against its own baseline ({'; '.join(baselines)}); "
             "speed-ups of different benchmarks were measured apart and are not comparable"] if baselines else []
    notes += [n for r in ordered if (n := modes_note(f"{r['model']}/{r['variant']}/{r.get('shape')}", r))]
    return Table(ordered, shown, title="summary per model and variant", notes=notes)


def rebuild_commands(runs: list[dict], store: RunStore) -> Table:
    """The optimum-cli command that rebuilds each variant of the runs, matched by file sha256."""
    by_sha: dict[str, tuple[str, str]] = {}
    for export in reversed(store.runs(kind="export")):  # newest last: it wins
        for row in store.rows(export["id"]):
            if row.get("sha256") and row.get("cli"):
                by_sha[row["sha256"]] = (row["cli"], export["id"])
    lines: dict[tuple, dict] = {}
    for run in runs:
        files = (run["provenance"] or {}).get("files") or {}
        name = run_model(run)[0]
        variants = dict.fromkeys([(model_of(r, name)[0], r.get("variant")) for r in run["rows"] if r.get("variant")]
                                 + [(name, v) for v in files])
        for model, variant in variants:
            sha = (files.get(variant) if model == name else None) or next(
                (r.get("sha256") for r in run["rows"]
                 if r.get("variant") == variant and r.get("sha256") and model_of(r, name)[0] == model), None)
            if (model, variant) in lines and lines[(model, variant)]["command"]:
                continue
            if variant == "torch":
                found, note = None, "PyTorch eager: the model folder itself, nothing to rebuild"
            elif sha in by_sha:
                found, note = by_sha[sha][0], f"recorded by export {by_sha[sha][1]}"
            else:
                found, note = None, (f"no recorded export built this file (sha256 {sha[:12]}...)" if sha
                                     else "its file was not recorded")
            lines[(model, variant)] = {"model": model, "variant": variant, "command": found, "note": note}
    return Table(list(lines.values()), [Column("model"), Column("variant"), Column("command"), Column("note")],
                 title="rebuild each variant with optimum-cli")


def environment_tables(runs: list[dict]) -> list[Table]:
    """The environment card, once per distinct environment, saying which runs it is for; a run on a
    Ray cluster adds each node's card, as that node gave it."""
    groups: list[tuple[dict, list[str]]] = []
    for run in runs:
        cards = [(run["id"], run["environment"] or {})]
        cards += [(f"{run['id']} on {kind}", {"host": node.get("host"), **(node.get("environment") or {})})
                  for kind, node in ((run["provenance"] or {}).get("nodes") or {}).items()]
        for label, card in cards:
            flat = flatten(card)
            for env, ids in groups:
                if env == flat:
                    ids.append(label)
                    break
            else:
                groups.append((flat, [label]))
    return [Table([{"field": k, "value": "-" if v is None else str(v)} for k, v in env.items()],
                  [Column("field"), Column("value")], title=f"environment of {', '.join(ids)}")
            for env, ids in groups]


def runs_table(runs: list[dict]) -> Table:
    lines = []
    for run in runs:
        prov = run["provenance"] or {}
        model = prov.get("model") or {}
        data = prov.get("dataset") or {}
        lines.append({
            "id": run["id"], "kind": run["kind"], "status": run["status"],
            "time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["created"])),
            "model": f"{model.get('name')} ({model.get('source')}, revision {model.get('revision') or '-'})",
            "weights": (model.get("weights_sha256") or "-")[:16],
            "data": f"{data.get('source')}: {data.get('rows')} rows, sha256 {str(data.get('sha256'))[:16]}"
                    if data else "-",
            "params": ", ".join(f"{k}={v}" for k, v in sorted((run["params"] or {}).items()) if v is not None),
        })
    return Table(lines, [Column(k) for k in ("id", "kind", "status", "time", "model", "weights", "data", "params")],
                 title="runs and the provenance of their inputs")


@dataclass
class Report:
    """A report written to ``path``; shows its summary."""

    path: Path
    run_ids: list[str]
    summary: Table

    def __str__(self) -> str:
        return f"{self.summary}\n\nreport of {len(self.run_ids)} runs written to {self.path}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return (self.summary._repr_html_() + f"<div>report of {len(self.run_ids)} runs written to "
                f"<code>{html.escape(str(self.path))}</code></div>")


def write_report(run_ids: list[str], path: str | Path | None = None, title: str | None = None,
                 store: RunStore | None = None) -> Report:
    """Write the report of ``run_ids`` (ids or unique suffixes) to ``path`` (default: a file under
    ``reports/`` in the cache folder)."""
    store = store if store is not None else RunStore()
    if not run_ids:
        raise UsageProblem("name the runs to report on (%hfmagic runs lists them)")
    runs = [store.get(r) for r in run_ids]  # every id checked before anything is written
    if path is None:
        path = settings().cache_path / "reports" / f"report-{runs[-1]['id']}.html"
    path = Path(path).expanduser()
    if path.is_dir():
        raise UsageProblem(f"{path} is a folder; give --html a file name (e.g. {path / 'report.html'})")

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(path, exc) from None

    models = list(dict.fromkeys(run_model(r)[0] or "?" for r in runs))
    title = title or f"hfmagic report: {', '.join(models)}"
    shown = [_recorded(r) for r in runs if r["kind"] in ("benchmark", "evaluate")]
    summary = summary_table(runs)
    sections = [summary, runs_table(runs), rebuild_commands(runs, store), *environment_tables(runs)]
    notes = [f"{r['id']}: {n}" for r in runs for n in ((r["summary"] or {}).get("notes") or [])]
    extra = [_STYLE] + [f'<section class="hfm-report">{t._repr_html_()}</section>' for t in sections]
    if notes:
        extra.append("<section class=\"hfm-report\"><strong>notes recorded with the runs</strong><ul>"
                     + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul></section>")
    extra.append(f"<p><small>written by hfmagic on {time.strftime('%Y-%m-%d %H:%M:%S')} from {html.escape(str(store.path))}"
                 "</small></p>")
    Dashboard(*shown, title=title).to_html(path, title=title, extra_html=extra)
    return Report(path, [r["id"] for r in runs], summary)
