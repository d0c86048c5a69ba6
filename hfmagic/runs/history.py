"""What the run store holds, read back: the list of runs, each with its headline figure, and housekeeping.

:func:`list_runs` gives the table ``%hfmagic runs`` shows (with one headline figure per run);
:func:`reference_of` and :func:`metric_names` say what a run's relative figures are against and
which metrics it scored (compare and the report read them too). Housekeeping: :func:`tag_run`,
:func:`delete_runs` removes runs, :func:`gc` the cached ONNX variants no recorded run refers to any
more. What differs between two runs: :mod:`hfmagic.runs.compare`; a run again:
:mod:`hfmagic.runs.rerun`.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import time
from pathlib import Path
from typing import Callable

from hfmagic.core.config import settings
from hfmagic.core.errors import UsageProblem
from hfmagic.core.records import field_of, metric_fields
from hfmagic.core.results import Column, Table
from hfmagic.core.shapes import shape_text
from hfmagic.export.cache import META, sweep_stale_temps
from hfmagic.store.db import RunStore, recording_off
from hfmagic.store.messages import Message, hint

# the kinds of run, and how two runs' rows of a kind are matched (compare)
KEYS = {"benchmark": ("variant", "backend", "batch_size", "seq_len", "image_size", "audio_seconds", "new_tokens"), "evaluate": ("variant",),
        "export": ("variant",), "optimize": ("candidate", "stage"), "loadtest": ("config", "rate")}
RUN_COLUMNS = [Column("id"), Column("time"), Column("kind"), Column("model"), Column("weights"), Column("status"),
               Column("rows", "#rows", "d", "right"), Column("tag"), Column("headline")]
SHORT_HASH = 8  # hex digits of the weights' sha256 shown next to the model's name
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def open_store(store: RunStore | None) -> RunStore:
    """``store``, or the configured one."""
    return store if store is not None else RunStore()


# -- the list ------------------------------------------------------------------------------------
def list_runs(store: RunStore | None = None, kind: str | None = None, limit: int | None = 20,
              model: str | None = None, since: str | float | None = None) -> Table:
    """The newest runs (all with ``limit=None``), one line each with a headline figure.

    ``kind``, ``model`` (its name, source, or the start of its weights' sha256) and ``since`` (a
    date, a time ago such as ``2h`` or ``3d``, or epoch seconds) keep only the runs that match."""
    store = open_store(store)
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
    if kind == "loadtest":  # its rows' statuses are verdicts on rates; the summary has each configuration's best
        return loadtest_headline(rows, params, summary or {})
    ok = [r for r in rows if r.get("status") == "ok"]
    failed = f"; {len(rows) - len(ok)} failed" if len(ok) < len(rows) else ""
    if not ok:
        return "no finished rows" if not rows else f"all {len(rows)} failed"
    name = row_namer(rows)
    run = {"kind": kind, "rows": rows, "params": params, "provenance": provenance or {}}
    if kind == "benchmark":
        shape = lambda r: f"{name(r)}/{r['backend']} {shape_text(r, compact=True)}"  # noqa: E731
        sped = [r for r in ok if r.get("speedup") is not None]
        if sped:
            best = max(sped, key=lambda r: r["speedup"])
            base = reference_of(run)
            against = f" vs {base['key']}" if base else ""
            return f"best {shape(best)}: {field_of('speedup').write(best)}{against}, p50 {_p50(best)}{failed}"
        best = min(ok, key=lambda r: r.get("p50_ms") or float("inf"))
        return f"fastest {shape(best)}: p50 {_p50(best)}{failed}"
    if kind == "evaluate":
        metric = metric_names(params, rows)[0]
        found = reference_of(run)
        key = found["key"] if found else "?"
        ref = next((r for r in rows if key in (name(r), f"{r.get('model')}/{r['variant']}")), None)
        value = None if ref is None else metric_fields(metric)[0].write(ref)
        text = f"{metric} {value or '-'} ({key})"
        judged = [r for r in ok if r.get("gate") in ("pass", "fail") and r.get("pct_of_reference") is not None]
        if judged:  # the gate's own verdicts; the worst is the lowest % (the highest where lower is better)
            lower = bool(found and found.get("lower_is_better"))
            worst = (max if lower else min)(judged, key=lambda r: r["pct_of_reference"])
            passed = sum(r["gate"] == "pass" for r in judged)
            text += (f"; {'highest' if lower else 'lowest'} {name(worst)} {field_of('pct_of_reference').write(worst)}; "
                     f"gate {passed}/{len(judged)} pass")
        return text + failed
    if kind == "export":
        sized = [r for r in ok if r.get("size_mb") is not None and r.get("variant") != "torch"]
        small = min(sized, key=lambda r: r["size_mb"]) if sized else None
        return f"{len(ok)} variant{'s' if len(ok) != 1 else ''}" + (f"; smallest {small['variant']} {field_of('size_mb').write(small)} MB" if small else "") + failed
    return f"{len(ok)} rows{failed}"


def loadtest_headline(rows: list[dict], params: dict, summary: dict) -> str:
    """The configuration with the most requests per second inside the SLO (or ok), with its gate."""
    best = {c: r for c, r in (summary.get("best") or {}).items() if r}
    inside = f"inside {params['slo_ms']:.0f} ms p99" if params.get("slo_ms") else "ok"
    if not best:
        return f"no rate {inside}" if rows else "no finished rows"
    top = max(best, key=best.get)
    gate = next((r.get("gate") for r in rows if r.get("config") == top and r.get("gate")), None)
    return f"most {inside}: {top} at {best[top]:g}/s" + (f" (gate {gate})" if gate else "")


def _p50(row: dict) -> str:
    """A row's p50 as the tables write it, with its unit."""
    p50 = field_of("p50_ms")
    figure, _, caveat = p50.write(row).partition(" ")  # "18.20 (2 modes)": the unit after the figure
    return f"{figure} {p50.unit}" + (f" {caveat}" if caveat else "")


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


# -- housekeeping ------------------------------------------------------------------------------------
def tag_run(run_id: str, text: str | None, store: RunStore | None = None) -> Message:
    """Give a run a tag, shown in the runs list (an empty one clears it)."""
    store = open_store(store)
    full = store.tag(run_id, text)
    return Message(f"run {full} tagged {text!r}" if text else f"run {full}'s tag cleared")


def delete_runs(run_ids: list[str], ask: Callable[[str], bool] | None = None,
                store: RunStore | None = None) -> Message:
    """Delete runs and their rows. Every id is checked first; ``ask`` (given the question) may say
    no, and then nothing is deleted."""
    store = open_store(store)
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

    store = open_store(store)
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
