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
from dataclasses import dataclass, field
from typing import Any

from hfmagic.backends import get_backend
from hfmagic.cluster import connect as clusters
from hfmagic.core.config import settings
from hfmagic.core.errors import UsageProblem
from hfmagic.core.hashing import file_sha256
from hfmagic.core.listargs import METRICS, VARIANTS, list_arguments
from hfmagic.core.records import takes
from hfmagic.data.metrics import EVALUATE_RESAMPLES, RESAMPLES
from hfmagic.evaluation.loop import run_all, scored_at
from hfmagic.evaluation.options import EvaluateOptions
from hfmagic.evaluation.result import EvaluationResult
from hfmagic.export.api import export_all, requests_for
from hfmagic.models.handle import BUILT_IN_MODELS, ModelHandle, check_distinct
from hfmagic.models.variants import TORCH, Variant, Variants, model_of, own_variants
from hfmagic.store.db import default_store


@dataclass
class Entry:
    """One model in an evaluation: its handle, its variants, and its data as its task read it."""

    model: ModelHandle
    target: Any
    data: Any = None
    batches: dict = field(default_factory=dict)  # batch size -> [(example indices, feed)]
    vset: Variants | None = None


@list_arguments(metrics=METRICS, variants=VARIANTS)
@takes(EvaluateOptions)
def evaluate(target: Any, options: EvaluateOptions) -> EvaluationResult:
    """Evaluate every variant of ``target`` (a model, a :class:`Variants`, or a list of them) on ``data``.

    ``data`` is what the model's task reads (text classification: anything
    :func:`hfmagic.data.tables.load_data` reads; token classification: CoNLL text or a Dataset with tokens
    and tags, or ``wnut16``; question answering: SQuAD JSON or a Dataset, or ``squad-bbc``; image
    classification: anything :func:`hfmagic.tasks.vision.images.load_images` reads, its images in
    ``image_column``; speech recognition: anything :func:`hfmagic.tasks.speech.audio.load_audio` reads, its
    audio in ``audio_column``); left out, the model's own held-out split (the demo's). ``label_map``
    is read by :func:`hfmagic.data.labels.read_label_map`. Every batch is padded to its own longest
    example; each row says the batch size it was scored at. Ctrl-C stops early and returns what was
    finished, saying how much. On a Ray cluster (``cluster``) each variant's batches run there in
    contiguous shards, one Ray task each; the outputs come back in data order and are scored here,
    as a single-process run scores them (:mod:`hfmagic.cluster.shards`). With ``backend="openvino"``
    a QDQ file's int8 arithmetic is OpenVINO's own: its accuracy is that runtime's; each row says
    which. The options (below: :class:`~hfmagic.evaluation.options.EvaluateOptions`) are keyword
    arguments.
    """
    o = options  # resolved below, in place: the store keeps them as the evaluation used them
    # -- everything cheap is checked before anything heavy starts ---------------------------
    targets = list(target) if isinstance(target, (list, tuple)) else [target]
    if not targets:
        raise UsageProblem("evaluate needs at least one model or variants object")
    entries = [Entry(model_of(t), t) for t in targets]
    several = len(entries) > 1
    _check_models(entries)
    task = entries[0].model.task_plugin
    evaluator = task.evaluator()
    sizes = _batch_sizes(o.batch_size)
    if o.limit is not None and o.limit <= 0:
        raise UsageProblem(f"--limit must be a positive number of examples, got {o.limit}")

    for e in entries:
        e.target = own_variants(e.model) or e.target  # a classical baseline has its one variant
    ref_entry, ref_variant = _reference(entries, o.reference)
    if ref_entry.model.kind.RUNTIME and ref_variant == TORCH:  # one way to run: that is its reference
        ref_variant = ref_entry.model.kind.RUNTIME
    for e in entries:
        if not e.model.kind.RUNTIME:
            _check_variant_names(e.target, o.variants, ref_variant if e is ref_entry else TORCH, e.model)

    address = clusters.resolve(o.cluster)
    if o.on is not None and not address:
        raise UsageProblem("--on places the shards on a Ray cluster's nodes; give --cluster ADDRESS too "
                           "(or %config HFMagic.cluster)")
    if o.on == "each":
        raise UsageProblem("--on each compares hardware, which %benchmark does; an evaluation's figures do not "
                           "depend on the node: leave --on out, or give resources (GPU:1) its shards need")
    clusters.parse_on(o.on)
    if o.backend not in (None, "onnxruntime", "openvino"):
        raise UsageProblem(f"--backend runs the ONNX variants on onnxruntime or openvino, got {o.backend!r}")
    if o.backend == "openvino":
        ok, why = get_backend("openvino").is_available()
        if not ok:
            raise UsageProblem(why)
        if address:
            raise UsageProblem("--backend openvino runs here, not on a cluster: leave --cluster out")
    chosen_metrics = evaluator.metrics(o.metrics, entries[0].model)
    metric_names = [getattr(m, "name", m) for m in chosen_metrics]
    if o.max_tokens is not None and not task.measurement.GENERATES:
        raise UsageProblem(f"--max-tokens is the text a decoder's perplexity is measured on; {entries[0].model.name} "
                           f"is {task.NAME}: use --limit")
    if o.chat_template and not task.measurement.GENERATES:
        raise UsageProblem(f"--chat-template formats the prompts of text-generation models; {entries[0].model.name} is "
                           f"{task.NAME}: leave it out")
    reading = {"split": o.split, "text_column": o.text_column, "label_column": o.label_column, "limit": o.limit,
               "image_column": o.image_column, "audio_column": o.audio_column,
               "label_map": o.label_map, "chat_template": o.chat_template, "max_tokens": o.max_tokens}
    data = given = o.data
    if data is None and getattr(evaluator, "DEFAULT_DATA", None):  # text for perplexity: the BBC articles
        data = evaluator.DEFAULT_DATA
    if data is None:
        first = entries[0].model
        if first.dataset is None:
            raise UsageProblem(f"pass --data: {first.name} has no held-out dataset of its own")

        data = first.source if first.source in BUILT_IN_MODELS else first.dataset
    for e in entries:
        e.data = evaluator.read(e.model, data, reading)
    base = ref_entry.data
    remote = None
    if address:  # reached before any variant is built

        remote = (clusters.connect(address), o.on, settings().resolved_threads())

    # -- the variants, the inputs, then one run per variant ---------------------------------
    for e in entries:
        own_ref = ref_variant if e is ref_entry else TORCH
        e.vset = e.target if isinstance(e.target, Variants) else _build_variants(e.model, o.variants, own_ref, o.progress)
    ordered = [ref_entry] + [e for e in entries if e is not ref_entry]
    plan = [(e, e.vset[n]) for e in ordered
            for n in _variant_names(e.vset, None if e.model.kind.RUNTIME else o.variants,
                                    ref_variant if e is ref_entry else None)]
    for e in entries:  # encoded once per batch size its variants are scored at
        wanted = {s for entry, v in plan if entry is e
                  for s in scored_at(v, sizes, entry is ref_entry and v.name == ref_variant)}
        e.batches = {s: evaluator.batches(e.model, e.data, s) for s in sorted(wanted)}
    notes = list(base.notes)
    notes += [f"{e.model.name}: {note}" if several else note for e in entries if (note := e.model.reference_note)]
    slow = [m.name for m in chosen_metrics if getattr(m, "kind", None) == "evaluate"]
    if slow:
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

    store = default_store()
    # the source as given (a file, a hub id; rerun reads it again), else what it was ("<DataFrame ...>")
    source = str(given) if isinstance(given, (str, os.PathLike)) else base.source
    # the options as resolved are what the run store keeps (and rerun takes again): the data's source, the
    # columns and label map it was read with, the variants scored
    o.data, o.variants, o.batch_size, o.cluster = source, [v.name for e, v in plan if e is entries[0]], sizes, address
    for name in ("text_column", "label_column", "label_map", "image_column", "audio_column"):
        setattr(o, name, base.params.get(name, getattr(o, name)))
    params = {**o.params(), "target": entries[0].model.source, "metric_names": metric_names,
              # the reference as resolved (a classical baseline's sklearn, MODEL/VARIANT with several
              # models): what the run list and compare read the relative figures against
              "reference_used": {"key": result.reference, "model": ref_entry.model.name,
                                 "weights_sha256": ref_entry.model.weights_sha256, "variant": ref_variant,
                                 "backend": None if ref_variant in (TORCH, ref_entry.model.kind.RUNTIME) else o.backend,
                                 "lower_is_better": result.lower_is_better}}
    if several:
        params["targets"] = [e.model.source for e in entries]
    provenance = {"model": entries[0].model.provenance(), "files": _files(plan, several),
                  "dataset": base.fingerprint}
    if several:
        provenance["models"] = [e.model.provenance() for e in entries]
    with store.recording("evaluate", params, provenance) if store else contextlib.nullcontext() as run:
        result.run_id = run.id if run else None
        interrupted = run_all(plan, evaluator, chosen_metrics, ref_entry, result, run, o.callback, o.progress, remote,
                              o.backend, sizes, o.reuse)
        if remote and remote[0].left_out_for(o.on):  # nodes the shards could have used, whose probe failed
            result.notes.append(f"cluster: {clusters.left_out_text(remote[0].left_out_for(o.on))}; the shards ran on "
                                "the other nodes")
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


def _check_models(entries: list[Entry]) -> None:
    tasks = {e.model.task for e in entries}
    if len(tasks) > 1:
        raise UsageProblem("the models are of different tasks (" + ", ".join(f"{e.model.name}: {e.model.task}"
                           for e in entries) + "); evaluate models of one task together")

    check_distinct([e.model for e in entries])


def _reference(entries: list[Entry], reference: str) -> tuple[Entry, str]:
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
    known = target.names if isinstance(target, Variants) else list(model.task_plugin.export.variant_names(model))
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

    if variants and set(variants) | {reference} == {TORCH}:
        return Variants(model, [Variant(TORCH, model)])
    names = list(variants or model.task_plugin.export.default_variants(model)) + [reference]
    if "int8-static" in names and model.dataset is None:
        raise UsageProblem(f"int8-static needs calibration {model.task_plugin.inputs.EXAMPLES} and {model.name} has none of its own; build it "
                           "with %export_onnx --quantize static --calibration DATA and evaluate that result")
    requests = requests_for(names, model.dataset)
    if not variants:
        requests = [requests[0] | {"quantize": "auto"}]  # the default set: auto's quantized variants
    return export_all(model, requests, progress=progress)


def _files(plan, several: bool) -> dict:
    return {(f"{e.model.name}/{v.name}" if several else v.name): v.sha256 or file_sha256(v.path)
            for e, v in plan if v.path is not None and v.path.exists()}
