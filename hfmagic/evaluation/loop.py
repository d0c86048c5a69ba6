"""The evaluation's run loop: every variant in turn over the same encoded batches (here, or as
shards on a Ray cluster), each scored at the batch sizes it needs, compared with the reference,
gated, and its row recorded as it finishes."""

from __future__ import annotations

import time
from typing import Any

from hfmagic.cluster.shards import evaluate_shards
from hfmagic.core.errors import UsageProblem
from hfmagic.core.records import EvalRow
from hfmagic.core.results import GATE, percent_text
from hfmagic.evaluation.result import EvaluationResult, row_key
from hfmagic.measure.runner import Runner
from hfmagic.models.variants import BATCH_DEPENDENT_WHY, Variant

EVAL_BATCH = 32     # the batch size of variants whose predictions do not depend on it: speed alone
SINGLE_REQUEST = 1  # a batch-dependent variant's default: the batch one request runs in
SHORT_SHA = 12


def run_all(plan, evaluator, chosen_metrics, ref_entry, result, run, callback, progress, remote=None,
             backend=None, sizes=None, reuse=None) -> bool:
    """Run every variant in turn, each at the batch sizes :func:`scored_at` gives it; True when
    Ctrl-C stopped it (what finished is kept). ``remote``: (cluster, on, threads) to run each
    variant's batches as shards on a Ray cluster. ``reuse``: a dict the reference's outputs are
    kept in across calls (:func:`_reference_outputs`)."""
    from tqdm.auto import tqdm

    several = len(result.models) > 1
    keys = [f"{e.model.name}/{v.name}" if several else v.name for e, v in plan]
    scored = [scored_at(v, sizes, k == result.reference) for (_, v), k in zip(plan, keys)]
    counts = [sum(len(e.batches[s]) for s in at) for (e, _), at in zip(plan, scored)]
    finished = 0
    bar = tqdm(total=sum(len(e.data) * len(at) for (e, _), at in zip(plan, scored)), unit="example",
               desc="evaluate", leave=False,
               disable=callback is not None or not progress)  # a live dashboard shows progress itself

    def tick(label: str) -> None:
        nonlocal finished
        finished += 1
        if callback:
            callback({"type": "progress", "done": finished, "total": sum(counts), "label": label})

    score = _Scorer(evaluator, chosen_metrics, ref_entry, result)
    try:
        for i, ((entry, variant), key, at) in enumerate(zip(plan, keys, scored)):
            row = EvalRow.from_dict({  # the evaluation's figures are added as they are found
                "model": entry.model.name, "model_sha": entry.model.weights_sha256[:SHORT_SHA],
                "variant": variant.name, "status": variant.error or "ok", "n": len(entry.data),
                "batch_size": at[0], "batch_dependent": variant.batch_dependent,
                "padding": evaluator.padding(entry.model)})
            if backend and variant.kind == "onnx":
                row["backend"] = backend
            if variant.ok:
                try:
                    if remote:
                        outputs = [(s, *_remote_outputs(variant, entry, entry.batches[s], evaluator, bar, *remote))
                                   for s in at]
                    elif reuse is not None and key == result.reference:
                        outputs = _reference_outputs(reuse, entry, variant, at, evaluator, bar, tick, backend,
                                                     result.notes)
                    else:
                        outputs = _outputs(variant, entry, at, evaluator, bar, tick, backend)
                    tried = []
                    for size, per_row, seconds, load_s, where in outputs:
                        figures, prediction, flips = score(entry, variant, key, per_row)
                        timing = {"load_s": load_s, "seconds": seconds,
                                  "samples_per_s": len(entry.data) / seconds if seconds else None, **where}
                        tried.append((size, timing | figures, prediction, flips))
                    size, figures, prediction, flips = _worst(tried, result.metrics[0], result.lower_is_better)
                    row.update(batch_size=size, **figures)
                    if len(tried) > 1:
                        row.update(batch_sizes=at, batch_scores=[_at_size(s, f, result.metrics[0]) for s, f, *_ in tried])
                    if key != result.reference:
                        result.flip_rows += [({"model": entry.model.name} if several else {}) | f for f in flips]
                    result.predictions[key] = prediction["pred"] if isinstance(prediction, dict) and "pred" in prediction \
                        else prediction
                except UsageProblem:
                    raise
                except Exception as exc:  # this variant failed to run: it stays, with the reason
                    first_line = (str(exc).strip().splitlines() or [""])[0]
                    row["status"] = f"failed: {type(exc).__name__}: {first_line}"
            if key == result.reference and row["status"] != "ok":
                result.notes.append(f"the reference {key} did not run ({row['status']}); no comparisons with it")
            finished = sum(counts[:i + 1])  # a variant that failed counts as done too
            result.rows.append(row)
            if run:
                run.add_row(row)
            if callback:
                callback({"type": "row", "row": row})
    except KeyboardInterrupt:
        done = {(r["model"], r["variant"]) for r in result.rows}
        left = [f"{e.model.name}/{v.name}" if several else v.name for e, v in plan if (e.model.name, v.name) not in done]
        result.notes.append(f"interrupted after {len(result.rows)} of {len(plan)} variants; {', '.join(left)} not "
                            "evaluated")
        return True
    finally:
        bar.close()
        result.notes += _batch_notes(result, sizes)
    return False


class _Scorer:
    """Scores one variant's outputs at one batch size, and compares them with the reference's
    prediction, which it keeps once the reference has run (it runs first)."""

    def __init__(self, evaluator, metrics, ref_entry, result: EvaluationResult):
        self.evaluator, self.metrics, self.ref_entry, self.result = evaluator, metrics, ref_entry, result
        self.reference = None  # the reference's prediction, which every other variant is compared with
        self.ref_value = None  # and its first metric

    def __call__(self, entry, variant: Variant, key: str, per_row: list) -> tuple[dict, Any, list]:
        """(figures, prediction, flips) of one run over the data."""
        evaluator, result, ref_entry = self.evaluator, self.result, self.ref_entry
        is_ref = key == result.reference
        prediction = evaluator.finish(entry.model, entry.data, per_row)
        figures = evaluator.score(entry.data, prediction, self.metrics)
        if is_ref:
            self.reference = prediction
            result.notes += evaluator.reference_notes(entry.data, figures)
        comparable = entry.data.fingerprint.get("sha256") == ref_entry.data.fingerprint.get("sha256")
        aligned = self.reference
        if self.reference is not None and comparable and entry.model is not ref_entry.model:
            aligned = evaluator.align(self.reference, ref_entry.model.labels, entry.model.labels)
            if isinstance(aligned, str):
                note = f"{key} is not compared with the reference {result.reference}: {aligned}"
                result.notes += [] if note in result.notes else [note]  # said once, whatever the sizes
                comparable = False
        flips: list = []
        if self.reference is not None and comparable:
            more, flips = evaluator.compare(entry.data, aligned, prediction, variant.name, entry.model.labels)
            figures.update(more)
            if is_ref:
                self.ref_value = figures.get(result.metrics[0])
            gate(figures, result.metrics[0], self.ref_value, is_ref, result.lower_is_better)
        return figures, prediction, flips


def scored_at(variant: Variant, sizes: list[int] | None, is_reference: bool) -> list[int]:
    """The batch sizes ``variant`` is scored at. One whose predictions depend on the batch: each
    size asked (default one request's), the reference at the first only (it is one prediction).
    Any other once, at the largest size asked (default :data:`EVAL_BATCH`): its predictions do not
    change with the batch, so a larger one only runs faster."""
    if variant.batch_dependent:
        chosen = sizes or [SINGLE_REQUEST]
        return chosen[:1] if is_reference else chosen
    return [max(sizes)] if sizes else [EVAL_BATCH]


def _worst(tried: list[tuple], first: str, lower_is_better: bool) -> tuple:
    """Of (size, figures, prediction, flips) at several batch sizes, the one whose first metric is
    worst (ties: the smallest size): a row's verdict must hold at every size it was scored at."""
    def badness(attempt) -> float:
        value = attempt[1].get(first)
        if value is None:
            return float("-inf")
        return value if lower_is_better else -value

    return max(tried, key=badness)


def _at_size(size: int, figures: dict, first: str) -> dict:
    """What a row of several batch sizes keeps of each (``batch_scores``)."""
    return {"batch_size": size, first: figures.get(first),
            **{k: figures.get(k) for k in ("pct_of_reference", "gate", "agreement", "flips")}}


def _batch_notes(result: EvaluationResult, sizes: list[int] | None) -> list[str]:
    """The padding and batch sizes every row was scored at, and why a batch-dependent variant's
    differ: the table never leaves the user to guess which batch an accuracy belongs to."""

    several = len(result.models) > 1
    rows = result.rows
    if not rows:
        return []
    given = " (--batch-size)" if sizes else ""
    notes = [f"batches: {'; '.join(dict.fromkeys(r['padding'] for r in rows))}"]
    steady = [r for r in rows if not r.get("batch_dependent")]
    why = (", larger than one request for speed" if not sizes else given if len(sizes) == 1
           else " (the largest --batch-size)")
    for size in dict.fromkeys(r["batch_size"] for r in steady):
        names = ", ".join(row_key(r, several) for r in steady if r["batch_size"] == size)
        notes.append(f"{names}: scored at batch {size}{why}; their predictions do not depend on the batch (float "
                     "rounding aside)")
    moving = [r for r in rows if r.get("batch_dependent")]
    if moving:
        names = ", ".join(row_key(r, several) for r in moving)
        at = ", ".join(map(str, sizes)) if sizes else f"{SINGLE_REQUEST}, the batch of a single request (what " \
            "%benchmark times at batch 1)"
        text = (f"{names} (batch marked *): {BATCH_DEPENDENT_WHY}, so the predictions depend on the batch they run "
                f"in: scored at batch {at}{given}")
        several_sizes = [r for r in moving if r.get("batch_scores")]
        if several_sizes:
            text += "; each row shows its worst size, whose verdict holds at every size (" + "; ".join(
                f"{row_key(r, several)} at batch " + ", ".join(_size_text(s, result.metrics[0]) for s in r["batch_scores"])
                for r in several_sizes) + ")"
        elif not sizes:
            text += "; --batch-size 1,8 scores them at each size and shows the worst"
        if sizes and len(sizes) > 1 and any(row_key(r, several) == result.reference for r in moving):
            text += f"; the reference {result.reference} at batch {sizes[0]} only (every row is compared with its one " \
                    "prediction)"
        notes.append(text)
    return notes


def _size_text(scores: dict, first: str) -> str:
    """``8: accuracy 0.9461 (98.59%, fail)``: one size of a row scored at several."""
    value, pct = scores.get(first), scores.get("pct_of_reference")
    verdict = ", ".join(v for v in (percent_text(pct) if pct is not None else None, scores.get("gate")) if v)
    return (f"{scores['batch_size']}: {first} " + ("-" if value is None else f"{value:.4f}")
            + (f" ({verdict})" if verdict else ""))


def gate(row: dict, first: str, ref_value: float | None, is_reference: bool, lower_is_better: bool = False) -> None:
    """``pct_of_reference``: the row's first metric as a percentage of the reference's; ``gate``:
    pass at 99% or more (MLPerf's rule; exactly 99% passes, float error aside), or for a metric
    where lower is better (perplexity) at 101% or less: 1% worse at most either way."""
    if not ref_value or row.get(first) is None:
        return
    row["pct_of_reference"] = pct = 100 * row[first] / ref_value
    if not is_reference:
        ok = pct <= 200 - GATE + 1e-9 if lower_is_better else pct >= GATE - 1e-9
        row["gate"] = "pass" if ok else "fail"


def _outputs(variant, entry, sizes, evaluator, bar, tick, backend=None) -> list[tuple]:
    """Per batch size: (size, the variant's per-row outputs in data order, seconds spent in the
    model, seconds to load it (once for every size), {})."""
    start = time.perf_counter()
    runner = Runner(variant, backend=backend)
    load_s = time.perf_counter() - start
    out = []
    try:
        for size in sizes:
            batches = entry.batches[size]
            per_row: list = [None] * sum(len(idx) for idx, _ in batches)
            seconds = 0.0
            label = f"{variant.name}" + (f" at batch {size}" if len(sizes) > 1 else "")
            bar.set_description(f"evaluate {label}")
            for i, (idx, feed) in enumerate(batches):
                t0 = time.perf_counter()
                named = runner.run(feed)
                seconds += time.perf_counter() - t0
                for j, output in zip(idx, evaluator.outputs(named, feed)):
                    per_row[int(j)] = output
                bar.update(len(idx) * len(entry.data) / max(1, len(per_row)))
                tick(f"{label}: batch {i + 1}/{len(batches)}")
            out.append((size, per_row, seconds, load_s, {}))
    finally:
        runner.close()
    return out


def _reference_outputs(reuse: dict, entry, variant, sizes, evaluator, bar, tick, backend, notes: list) -> list[tuple]:
    """The reference's outputs (as :func:`_outputs` gives them), read from ``reuse`` where an earlier
    call ran the same variant of the same model on the same data at the same batch sizes (a search
    evaluates its candidates in several calls, each against the reference); else run and kept there.
    A row read back says so in a note: its eval throughput is the earlier run's."""
    key = (id(entry.model), entry.model.weights_sha256, variant.name, variant.sha256,
           entry.data.fingerprint.get("sha256"), tuple(sizes), backend if variant.kind == "onnx" else None)
    if key in reuse:
        bar.update(len(entry.data) * len(sizes))
        notes.append(f"the reference {variant.name}'s outputs were read back from an earlier evaluation of the same "
                     "weights on the same data at the same batch size, not computed again (its eval throughput is "
                     "that run's)")
        return reuse[key]
    reuse[key] = out = _outputs(variant, entry, sizes, evaluator, bar, tick, backend)
    return out


def _remote_outputs(variant, entry, batches, evaluator, bar, cluster, on, threads):
    """As :func:`_outputs` for one batch size, from shards run on a Ray cluster; and where they ran."""

    bar.set_description(f"evaluate {variant.name} (cluster)")
    got = evaluate_shards(cluster, on, variant, batches, threads)
    per_row: list = [None] * sum(len(idx) for idx, _ in batches)
    for (idx, feed), named in zip(batches, got["outputs"]):
        for j, out in zip(idx, evaluator.outputs(named, feed)):
            per_row[int(j)] = out
    bar.update(len(entry.data))
    where = {"shards": got["shards"], "nodes": ", ".join(got["nodes"]), "host": ", ".join(got["hosts"])}
    return per_row, got["seconds"], got["load_s"], where
