"""``%evaluate``: how well every variant of one or several models does on labelled data, and where it differs.

:func:`evaluate` runs each variant (PyTorch eager and the ONNX files, through onnxruntime) over the
same inputs and reports per variant: each metric with a bootstrap 95% interval, the first metric
as a percentage of the reference's with a pass/fail at 99% (MLPerf's rule), agreement with the
reference's predictions, the largest logit difference and eval throughput; and the examples whose
prediction changed (``.flips``).

What the data is, how it is encoded, what a prediction is and how it is scored belong to the
model's task (:meth:`hfmagic.tasks.base.Task.evaluator`): texts and classes for classification,
sentences and entities for token classification (seqeval), questions and answer spans for
question answering (SQuAD), embeddings for feature extraction. This module is the driver that
runs every task alike: read once, encode once, run every variant on the same numpy arrays (ONNX
files in a plain ``onnxruntime.InferenceSession`` with hfmagic's thread setting), score, compare.

Batches are padded as a served batch is (each to its own longest example) and every row says the
batch size it was scored at. A variant whose predictions depend on the batch it runs in (dynamic
int8, whose activation ranges are taken over the whole padded batch: :attr:`Variant.batch_dependent`)
is scored at batch 1, what a single request runs at and what %benchmark's batch-1 rows time, unless
``batch_size`` says otherwise (several sizes: each, and its row shows the worst); the others'
predictions do not depend on it (float rounding aside) and run at 32, which is faster.

Several models (``evaluate([a, b])``, ``%evaluate a b``) are scored on the same data and compared
with one reference (``reference="MODEL/VARIANT"``; default the first model's torch): rows carry
their model, and data that reads differently for two models (another fingerprint) is flagged and
never compared.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from hfmagic.core.errors import UsageProblem
from hfmagic.core.hashing import file_sha256
from hfmagic.core.listargs import METRICS, VARIANTS, list_arguments
from hfmagic.models.handle import ModelHandle
from hfmagic.core.results import GATE, Column, Table, batch_label, gate_title, interval_text, percent_text
from hfmagic.measure.runner import Runner
from hfmagic.models.variants import TORCH, Variant, Variants, model_of

EVAL_BATCH = 32     # the batch size of variants whose predictions do not depend on it: speed alone
SINGLE_REQUEST = 1  # a batch-dependent variant's default: the batch one request runs in
SHORT_SHA = 12


@dataclass
class EvaluationResult:
    """Per-variant figures (``.rows``), changed predictions (``.flips``), the run id and notes."""

    model_name: str           # "demo", or "demo, small" for several models
    task: str
    metrics: list[str]
    reference: str            # the variant others are compared with ("model/variant" for several models)
    data_source: str
    fingerprint: dict
    labels: dict[int, str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None
    predictions: dict[str, Any] = field(default_factory=dict, repr=False)  # variant -> prediction (class ids)
    flip_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    weights_sha256: str | None = None  # the model's; None when several models are compared
    caption: str | None = None  # a guess about the data the title carries (texts from one of several columns)
    flip_columns: tuple[str, ...] = ("variant", "row")
    models: list[str] = field(default_factory=list)
    lower_is_better: bool = False  # the first metric's direction (perplexity): the gate then caps it

    @property
    def flips(self):
        """A DataFrame of the examples whose prediction changed (the task's columns: text, label and both
        predictions for classification; tokens and entities for NER; question and answers for QA)."""
        import pandas as pd

        columns = (("model",) if len(self.models) > 1 else ()) + tuple(self.flip_columns)
        return pd.DataFrame(self.flip_rows, columns=list(columns))

    # -- the table -----------------------------------------------------------------------------
    def table(self) -> Table:
        several = len(self.models) > 1
        columns = ([Column("model")] if several else []) + [Column("variant"), Column("n", "n", "d", "right"),
                                                            Column("batch", "batch", None, "right")]
        shown = []
        for row in self.rows:
            view = dict(row, batch=batch_label(row))
            for m in self.metrics:
                if row.get(f"{m}_low") is not None:
                    view[f"{m}_ci"] = (row[f"{m}_low"], row[f"{m}_high"])
            if _key(row, several) == self.reference and row.get("status") == "ok":
                view["gate"] = "reference"
            shown.append(view)
        for m in self.metrics:
            columns += [Column(m, m, ".4f", "right"), Column(f"{m}_ci", "95% CI", interval_text, "right")]
        columns += [Column("pct_of_reference", f"% of {self.reference}", percent_text, "right"),
                    Column("gate", gate_title(self.lower_is_better))]
        if any(r.get("flips") is not None for r in self.rows):
            columns += [Column("agreement", "agreement", ".2%", "right"), Column("flips", "flips", "d", "right")]
        if any(r.get("first_divergence") is not None for r in self.rows):  # greedy generations
            columns += [Column("first_divergence", "first diff at", ".1f", "right"),
                        Column("token_agreement", "next-token agree", ".2%", "right")]
        columns += [Column("max_logit_diff", "max |diff|", ".2e", "right"),
                    Column("samples_per_s", "samples/s", ".1f", "right"), Column("status")]
        about = f"{self.fingerprint.get('rows')} examples" + (f"; {self.caption}" if self.caption else "")
        title = f"evaluation of {self.model_name} on {self.data_source} ({about})"
        return Table(shown, columns, title=title, notes=self.notes)

    def to_pandas(self):
        """One row per variant with every figure (intervals as <metric>_low / <metric>_high)."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def to_json(self, **kwargs) -> str:
        return Table(self.rows, [], title=self.table().title, notes=self.notes).to_json(**kwargs)

    def __len__(self) -> int:
        return len(self.rows)

    def __str__(self) -> str:
        text = str(self.table())
        if self.flip_rows:
            text += f"\n{len(self.flip_rows)} changed predictions: see .flips"
        return text

    def __repr__(self) -> str:
        return (f"<EvaluationResult of {self.model_name} on {self.data_source}: {len(self.rows)} variants, "
                f"run {self.run_id or '(not recorded)'}>")

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        return self.table()._repr_html_() + self._thumbnails()

    def _thumbnails(self, limit: int = 24) -> str:
        """The flipped images (image tasks' flips carry a thumbnail), each with both predictions."""
        import html

        shown = [f for f in self.flip_rows if f.get("thumbnail")][:limit]
        if not shown:
            return ""
        cells = "".join(
            f'<figure style="display:inline-block;margin:4px;text-align:center;font-size:11px">'
            f'<img src="{f["thumbnail"]}" width="48" height="48" style="image-rendering:pixelated" '
            f'alt="{html.escape(str(f.get("image")))}"><figcaption>{html.escape(str(f.get("variant")))}: '
            f'{html.escape(str(f.get("reference")))} &rarr; {html.escape(str(f.get("prediction")))}</figcaption></figure>'
            for f in shown)
        more = len([f for f in self.flip_rows if f.get("thumbnail")]) - len(shown)
        tail = f"<div><em>and {more} more: see .flips</em></div>" if more > 0 else ""
        return f'<div class="hfmagic-flips"><strong>changed predictions</strong><div>{cells}</div>{tail}</div>'


def _key(row: dict, several: bool) -> str:
    return f"{row['model']}/{row['variant']}" if several else row["variant"]


@dataclass
class _Entry:
    """One model in an evaluation: its handle, its variants, and its data as its task read it."""

    model: ModelHandle
    target: Any
    data: Any = None
    batches: dict = field(default_factory=dict)  # batch size -> [(example indices, feed)]
    vset: Variants | None = None


@list_arguments(metrics=METRICS, variants=VARIANTS)
def evaluate(target: Any, data: Any = None, split: str | None = None, text_column: str | None = None,
             label_column: str | None = None, metrics: list[str] | None = None,
             variants: list[str] | None = None, limit: int | None = None,
             batch_size: int | list[int] | None = None,
             reference: str = TORCH, callback: Callable[[dict], None] | None = None,
             progress: bool = True, label_map: Any = None, chat_template: bool = False,
             max_tokens: int | None = None, image_column: str | None = None,
             audio_column: str | None = None, cluster: str | None = None, on: str | None = None,
             backend: str | None = None) -> EvaluationResult:
    """Evaluate every variant of ``target`` (a model, a :class:`Variants`, or a list of them) on ``data``.

    ``data`` is what the model's task reads (text classification: anything
    :func:`hfmagic.data.tables.load_data` reads; token classification: CoNLL text or a Dataset with tokens
    and tags, or ``wnut16``; question answering: SQuAD JSON or a Dataset, or ``squad-bbc``; image
    classification: anything :func:`hfmagic.tasks.vision.images.load_images` reads, its images in
    ``image_column``; speech recognition: anything :func:`hfmagic.tasks.speech.audio.load_audio` reads, its
    audio in ``audio_column``); left
    out, the model's own held-out split (the demo's). ``label_map``: a dict from the data's labels
    to the model's names or ids, a JSON file holding one, a dict literal, or ``"ids"``
    (:func:`hfmagic.data.tables.read_label_map`). ``reference``: the variant every other is compared with
    (``MODEL/VARIANT`` with several models; default the first model's torch).
    ``batch_size``: the batch size, or sizes, to score at. Left out, a variant whose predictions
    depend on the batch (dynamic int8) runs at 1, as a single request does, and the others at 32;
    given, those run at it (each size of a list, the row showing the worst) and the others at the
    largest. Every batch is padded to its own longest example; each row says its size.
    Ctrl-C stops early and returns what was finished, saying how much.
    ``progress``: show a progress bar (never with a ``callback``: a live dashboard shows its own).
    ``cluster``: a Ray cluster's address (default ``%config HFMagic.cluster``): each variant's
    batches run there in contiguous shards, one Ray task each, on nodes with the resources ``on``
    names; the outputs come back in data order and are scored here, as a single-process run scores
    them (:mod:`hfmagic.cluster.connect`).
    ``backend``: what the ONNX variants run on, ``onnxruntime`` (default) or ``openvino`` (a QDQ
    file's int8 arithmetic is the runtime's own: its accuracy is that runtime's); each row says which.
    """
    # -- everything cheap is checked before anything heavy starts ---------------------------
    targets = list(target) if isinstance(target, (list, tuple)) else [target]
    if not targets:
        raise UsageProblem("evaluate needs at least one model or variants object")
    entries = [_Entry(model_of(t), t) for t in targets]
    several = len(entries) > 1
    _check_models(entries)
    task = entries[0].model.task_plugin
    evaluator = task.evaluator()
    sizes = _batch_sizes(batch_size)
    if limit is not None and limit <= 0:
        raise UsageProblem(f"--limit must be a positive number of examples, got {limit}")
    from hfmagic.models.variants import own_variants

    for e in entries:
        e.target = own_variants(e.model) or e.target  # a classical baseline has its one variant
    ref_entry, ref_variant = _reference(entries, reference)
    if ref_entry.model.kind.RUNTIME and ref_variant == TORCH:  # one way to run: that is its reference
        ref_variant = ref_entry.model.kind.RUNTIME
    for e in entries:
        if not e.model.kind.RUNTIME:
            _check_variant_names(e.target, variants, ref_variant if e is ref_entry else TORCH, e.model)
    from hfmagic.cluster import connect as clusters

    address = clusters.resolve(cluster)
    if on is not None and not address:
        raise UsageProblem("--on places the shards on a Ray cluster's nodes; give --cluster ADDRESS too "
                           "(or %config HFMagic.cluster)")
    if on == "each":
        raise UsageProblem("--on each compares hardware, which %benchmark does; an evaluation's figures do not "
                           "depend on the node: leave --on out, or give resources (GPU:1) its shards need")
    clusters.parse_on(on)
    if backend not in (None, "onnxruntime", "openvino"):
        raise UsageProblem(f"--backend runs the ONNX variants on onnxruntime or openvino, got {backend!r}")
    if backend == "openvino":
        from hfmagic.backends import get_backend

        ok, why = get_backend("openvino").is_available()
        if not ok:
            raise UsageProblem(why)
        if address:
            raise UsageProblem("--backend openvino runs here, not on a cluster: leave --cluster out")
    chosen_metrics = evaluator.metrics(metrics, entries[0].model)
    metric_names = [getattr(m, "name", m) for m in chosen_metrics]
    if max_tokens is not None and not task.measurement.GENERATES:
        raise UsageProblem(f"--max-tokens is the text a decoder's perplexity is measured on; {entries[0].model.name} "
                           f"is {task.NAME}: use --limit")
    if chat_template and not task.measurement.GENERATES:
        raise UsageProblem(f"--chat-template formats the prompts of text-generation models; {entries[0].model.name} is "
                           f"{task.NAME}: leave it out")
    options = {"split": split, "text_column": text_column, "label_column": label_column, "limit": limit,
               "image_column": image_column, "audio_column": audio_column,
               "label_map": label_map, "chat_template": chat_template, "max_tokens": max_tokens}
    given = data
    if data is None and getattr(evaluator, "DEFAULT_DATA", None):  # text for perplexity: the BBC articles
        data = evaluator.DEFAULT_DATA
    if data is None:
        first = entries[0].model
        if first.dataset is None:
            raise UsageProblem(f"pass --data: {first.name} has no held-out dataset of its own")
        from hfmagic.models.handle import BUILT_IN_MODELS

        data = first.source if first.source in BUILT_IN_MODELS else first.dataset
    for e in entries:
        e.data = evaluator.read(e.model, data, options)
    base = ref_entry.data
    remote = None
    if address:  # reached before any variant is built
        from hfmagic.core.config import settings

        remote = (clusters.connect(address), on, settings().resolved_threads())

    # -- the variants, the inputs, then one run per variant ---------------------------------
    for e in entries:
        own_ref = ref_variant if e is ref_entry else TORCH
        e.vset = e.target if isinstance(e.target, Variants) else _build_variants(e.model, variants, own_ref, progress)
    ordered = [ref_entry] + [e for e in entries if e is not ref_entry]
    plan = [(e, e.vset[n]) for e in ordered
            for n in _variant_names(e.vset, None if e.model.kind.RUNTIME else variants,
                                    ref_variant if e is ref_entry else None)]
    for e in entries:  # encoded once per batch size its variants are scored at
        wanted = {s for entry, v in plan if entry is e
                  for s in _scored_at(v, sizes, entry is ref_entry and v.name == ref_variant)}
        e.batches = {s: evaluator.batches(e.model, e.data, s) for s in sorted(wanted)}
    notes = list(base.notes)
    slow = [m.name for m in chosen_metrics if getattr(m, "kind", None) == "evaluate"]
    if slow:
        from hfmagic.data.metrics import EVALUATE_RESAMPLES, RESAMPLES

        notes.append(f"the intervals of {', '.join(slow)} (evaluate metrics, one call per resample) come from "
                     f"{EVALUATE_RESAMPLES} bootstrap resamples, the others' from {RESAMPLES}")
    for e in entries:
        if e.data.fingerprint.get("sha256") != base.fingerprint.get("sha256"):
            notes.append(f"{e.model.name} read the data differently (fingerprint {e.data.fingerprint.get('sha256', '')[:12]} "
                         f"against {base.fingerprint.get('sha256', '')[:12]} for {ref_entry.model.name}): its rows are "
                         "not compared with the reference")
    names = [e.model.name for e in entries]
    result = EvaluationResult(
        model_name=", ".join(names), task=task.NAME, metrics=metric_names,
        reference=f"{ref_entry.model.name}/{ref_variant}" if several else ref_variant,
        data_source=base.source, fingerprint=base.fingerprint, labels=ref_entry.model.labels, notes=notes,
        weights_sha256=None if several else entries[0].model.weights_sha256, caption=base.caption,
        flip_columns=evaluator.FLIP_COLUMNS, models=names,
        lower_is_better=metric_names[0] in getattr(evaluator, "LOWER_IS_BETTER", ()))
    from hfmagic.store.db import default_store

    store = default_store()
    # the source as given (a file, a hub id; rerun reads it again), else what it was ("<DataFrame ...>")
    source = str(given) if isinstance(given, (str, os.PathLike)) else base.source
    params = {"target": entries[0].model.source, "data": source, "split": split,
              **{k: base.params.get(k, v) for k, v in (("text_column", text_column), ("label_column", label_column),
                                                      ("label_map", label_map), ("image_column", image_column),
                                                      ("audio_column", audio_column))},
              "metrics": metrics, "metric_names": metric_names,
              "variants": [v.name for e, v in plan if e is entries[0]], "limit": limit, "batch_size": sizes,
              "reference": reference, "cluster": address, "on": on,
              # the reference as resolved (a classical baseline's sklearn, MODEL/VARIANT with several
              # models): what the run list and compare read the relative figures against
              "reference_used": {"key": result.reference, "model": ref_entry.model.name,
                                 "weights_sha256": ref_entry.model.weights_sha256, "variant": ref_variant,
                                 "backend": None if ref_variant in (TORCH, ref_entry.model.kind.RUNTIME) else backend,
                                 "lower_is_better": result.lower_is_better}}
    if backend:
        params["backend"] = backend
    if chat_template:
        params["chat_template"] = True
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if several:
        params["targets"] = [e.model.source for e in entries]
    provenance = {"model": _model_provenance(entries[0].model), "files": _files(plan, several),
                  "dataset": base.fingerprint}
    if several:
        provenance["models"] = [_model_provenance(e.model) for e in entries]
    with store.recording("evaluate", params, provenance) if store else contextlib.nullcontext() as run:
        result.run_id = run.id if run else None
        interrupted = _run_all(plan, evaluator, chosen_metrics, ref_entry, result, run, callback, progress, remote,
                               backend, sizes)
        if run:
            run.finish("interrupted" if interrupted else "ok", {"notes": result.notes, "flips": result.flip_rows})
    return result


def _batch_sizes(given) -> list[int] | None:
    """``batch_size`` as the ascending sizes asked for (a size, or a list of them); None when left out."""
    if given is None:
        return None
    values = [given] if isinstance(given, int) else list(given) if isinstance(given, (list, tuple)) else []
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values):
        raise UsageProblem(f"--batch-size takes positive whole numbers, a size or a list such as 1,8; got {given!r}")
    return sorted(set(values))


def _check_models(entries: list[_Entry]) -> None:
    tasks = {e.model.task for e in entries}
    if len(tasks) > 1:
        raise UsageProblem("the models are of different tasks (" + ", ".join(f"{e.model.name}: {e.model.task}"
                           for e in entries) + "); evaluate models of one task together")
    from hfmagic.models.handle import check_distinct

    check_distinct([e.model for e in entries])


def _reference(entries: list[_Entry], reference: str) -> tuple[_Entry, str]:
    """(the entry, the variant name) of ``reference``: ``VARIANT`` (the first model's) or ``MODEL/VARIANT``."""
    model, _, variant = str(reference).rpartition("/")
    if not model:
        return entries[0], variant
    for e in entries:
        if e.model.name == model:
            return e, variant
    raise UsageProblem(f"--reference {reference!r} names no model of this evaluation; use MODEL/VARIANT with "
                       f"one of: {', '.join(e.model.name for e in entries)}")


def _check_variant_names(target, variants: list[str] | None, reference: str, model) -> None:
    """Unknown variant names fail before anything is built."""
    known = target.names if isinstance(target, Variants) else list(model.task_plugin.export.variant_names())
    for name in list(variants or []) + [reference]:
        if name not in known:
            hint = "" if isinstance(target, Variants) else " (export others with %export_onnx, then pass its result)"
            raise UsageProblem(f"no variant {name!r}; choose from: {', '.join(known)}{hint}")


def _variant_names(vset: Variants, variants: list[str] | None, reference: str | None) -> list[str]:
    """The variants to run: those asked for (default all), the reference first and always."""
    for name in list(variants or []) + ([reference] if reference else []):
        vset[name]  # a name export_onnx did not build: UsageProblem listing what it did
    chosen = [n for n in (variants or vset.names) if n != reference]
    return ([reference] if reference else []) + chosen


def _build_variants(model: ModelHandle, variants: list[str] | None, reference: str, progress: bool) -> Variants:
    """torch alone needs no export; otherwise export_onnx builds (or takes from its cache) the
    variants asked for, or its default set plus the reference when none were named."""
    from hfmagic.export.api import export_onnx, request_for

    if variants and set(variants) | {reference} == {TORCH}:
        return Variants(model, [Variant(TORCH, model)])
    names = list(variants or model.task_plugin.export.default_variants(model)) + [reference]
    if "int8-static" in names and model.dataset is None:
        raise UsageProblem(f"int8-static needs calibration {model.task_plugin.inputs.EXAMPLES} and {model.name} has none of its own; build it "
                           "with %export_onnx --quantize static --calibration DATA and evaluate that result")
    request = request_for(names, model.dataset)
    if not variants:
        request["quantize"] = "auto"  # the default set has the int8 twins
    return export_onnx(model, **request, progress=progress)


# -- running ---------------------------------------------------------------------------------
def _run_all(plan, evaluator, chosen_metrics, ref_entry, result, run, callback, progress, remote=None,
             backend=None, sizes=None) -> bool:
    """Run every variant in turn, each at the batch sizes :func:`_scored_at` gives it; True when
    Ctrl-C stopped it (what finished is kept). ``remote``: (cluster, on, threads) to run each
    variant's batches as shards on a Ray cluster."""
    from tqdm.auto import tqdm

    several = len(result.models) > 1
    keys = [f"{e.model.name}/{v.name}" if several else v.name for e, v in plan]
    scored = [_scored_at(v, sizes, k == result.reference) for (_, v), k in zip(plan, keys)]
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
            row = {"model": entry.model.name, "model_sha": entry.model.weights_sha256[:SHORT_SHA],
                   "variant": variant.name, "status": variant.error or "ok", "n": len(entry.data),
                   "batch_size": at[0], "batch_dependent": variant.batch_dependent,
                   "padding": evaluator.padding(entry.model)}
            if backend and variant.kind == "onnx":
                row["backend"] = backend
            if variant.ok:
                try:
                    if remote:
                        outputs = [(s, *_remote_outputs(variant, entry, entry.batches[s], evaluator, bar, *remote))
                                   for s in at]
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

    def __init__(self, evaluator, metrics, ref_entry: _Entry, result: EvaluationResult):
        self.evaluator, self.metrics, self.ref_entry, self.result = evaluator, metrics, ref_entry, result
        self.reference = None  # the reference's prediction, which every other variant is compared with
        self.ref_value = None  # and its first metric

    def __call__(self, entry: _Entry, variant: Variant, key: str, per_row: list) -> tuple[dict, Any, list]:
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


def _scored_at(variant: Variant, sizes: list[int] | None, is_reference: bool) -> list[int]:
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
    from hfmagic.models.variants import BATCH_DEPENDENT_WHY

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
        names = ", ".join(_key(r, several) for r in steady if r["batch_size"] == size)
        notes.append(f"{names}: scored at batch {size}{why}; their predictions do not depend on the batch (float "
                     "rounding aside)")
    moving = [r for r in rows if r.get("batch_dependent")]
    if moving:
        names = ", ".join(_key(r, several) for r in moving)
        at = ", ".join(map(str, sizes)) if sizes else f"{SINGLE_REQUEST}, the batch of a single request (what " \
            "%benchmark times at batch 1)"
        text = (f"{names} (batch marked *): {BATCH_DEPENDENT_WHY}, so the predictions depend on the batch they run "
                f"in: scored at batch {at}{given}")
        several_sizes = [r for r in moving if r.get("batch_scores")]
        if several_sizes:
            text += "; each row shows its worst size, whose verdict holds at every size (" + "; ".join(
                f"{_key(r, several)} at batch " + ", ".join(_size_text(s, result.metrics[0]) for s in r["batch_scores"])
                for r in several_sizes) + ")"
        elif not sizes:
            text += "; --batch-size 1,8 scores them at each size and shows the worst"
        if sizes and len(sizes) > 1 and any(_key(r, several) == result.reference for r in moving):
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


def _remote_outputs(variant, entry, batches, evaluator, bar, cluster, on, threads):
    """As :func:`_outputs` for one batch size, from shards run on a Ray cluster; and where they ran."""
    from hfmagic.cluster.connect import evaluate_shards

    bar.set_description(f"evaluate {variant.name} (cluster)")
    got = evaluate_shards(cluster, on, variant, batches, threads)
    per_row: list = [None] * sum(len(idx) for idx, _ in batches)
    for (idx, feed), named in zip(batches, got["outputs"]):
        for j, out in zip(idx, evaluator.outputs(named, feed)):
            per_row[int(j)] = out
    bar.update(len(entry.data))
    where = {"shards": got["shards"], "nodes": ", ".join(got["nodes"]), "host": ", ".join(got["hosts"])}
    return per_row, got["seconds"], got["load_s"], where


def _model_provenance(model: ModelHandle) -> dict:
    return {"source": model.source, "path": str(model.path), "revision": model.revision,
            "weights_sha256": model.weights_sha256, "task": model.task, "name": model.name}


def _files(plan, several: bool) -> dict:
    return {(f"{e.model.name}/{v.name}" if several else v.name): v.sha256 or file_sha256(v.path)
            for e, v in plan if v.path is not None and v.path.exists()}
