"""``%evaluate``: how well every variant of a model does on labelled data, and where it differs.

:func:`evaluate` runs each variant (PyTorch eager and the ONNX files, through onnxruntime) over the
same tokenized batches, then reports per variant: each metric with a bootstrap 95% interval, the
first metric as a percentage of the reference's with a pass/fail at 99% (MLPerf's rule), agreement
with the reference's predictions, the largest logit difference and eval throughput; and the
examples whose prediction changed (``.flips``).

Texts are tokenized once, as the ``text-classification`` pipeline does (``truncation=True``), sorted
by length and padded per batch, so every variant sees identical inputs. ONNX files run in a plain
``onnxruntime.InferenceSession`` fed those same numpy arrays: no tensor conversion, no optimum
import (2.7 s), and hfmagic's thread setting applied to the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from hfmagic.data import LabelledData, load_data, read_label_map
from hfmagic.errors import BuildError, DataError, UnsupportedError, UsageProblem
from hfmagic.metrics import EVALUATE_RESAMPLES, RESAMPLES, Metric, bootstrap, resolve
from hfmagic.models import ModelHandle, file_sha256, load_model
from hfmagic.results import Column, Table
from hfmagic.variants import TORCH, Variant, Variants

TASKS = ("text-classification", "feature-extraction")
GATE = 99.0  # percent of the reference's first metric a variant must keep (MLPerf's 99% rule)
FLIP_COLUMNS = ["variant", "row", "text", "label", "reference", "prediction", "confidence",
                "reference_confidence"]


def _pct(value: float) -> str:
    return f"{value:.2f}%"


def _interval(pair) -> str:
    return f"[{pair[0]:.4f}, {pair[1]:.4f}]"


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


@dataclass
class EvaluationResult:
    """Per-variant figures (``.rows``), changed predictions (``.flips``), the run id and notes."""

    model_name: str
    task: str
    metrics: list[str]
    reference: str
    data_source: str
    fingerprint: dict
    labels: dict[int, str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None
    predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # class ids, data order
    flip_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    weights_sha256: str | None = None  # the model's (a dashboard refuses to mix two models)
    caption: str | None = None  # a guess about the data the title carries (texts from one of several columns)

    def add_flips(self, variant: str, changed: np.ndarray, data, y_true, ref_pred, ref_logits, pred, logits):
        """Record the examples whose predicted class differs from the reference's."""
        if variant == self.reference:
            return
        ref_prob, prob = _softmax(ref_logits[changed]), _softmax(logits[changed])
        for j, i in enumerate(changed.tolist()):
            self.flip_rows.append({
                "variant": variant, "row": i, "text": data.texts[i], "label": self.labels[int(y_true[i])],
                "reference": self.labels[int(ref_pred[i])], "prediction": self.labels[int(pred[i])],
                "confidence": float(prob[j, pred[i]]), "reference_confidence": float(ref_prob[j, ref_pred[i]]),
            })

    @property
    def flips(self):
        """A DataFrame of the examples whose prediction changed: text, label, both predictions."""
        import pandas as pd

        return pd.DataFrame(self.flip_rows, columns=FLIP_COLUMNS)

    # -- the table -----------------------------------------------------------------------------
    def table(self) -> Table:
        columns = [Column("variant"), Column("n", "n", "d", "right")]
        shown = []
        for row in self.rows:
            view = dict(row)
            for m in self.metrics:
                if row.get(f"{m}_low") is not None:
                    view[f"{m}_ci"] = (row[f"{m}_low"], row[f"{m}_high"])
            if row["variant"] == self.reference and row.get("status") == "ok":
                view["gate"] = "reference"
            shown.append(view)
        for m in self.metrics:
            columns += [Column(m, m, ".4f", "right"), Column(f"{m}_ci", "95% CI", _interval, "right")]
        columns += [
            Column("pct_of_reference", f"% of {self.reference}", _pct, "right"), Column("gate", "gate (99%)"),
        ]
        if self.task == "text-classification":
            columns += [Column("agreement", "agreement", ".2%", "right"), Column("flips", "flips", "d", "right")]
        columns += [Column("max_logit_diff", "max |diff|" if self.task != "text-classification"
                           else "max |logit diff|", ".2e", "right"),
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

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def evaluate(target: Any, data: Any = None, split: str | None = None, text_column: str | None = None,
             label_column: str | None = None, metrics: list[str] | None = None,
             variants: list[str] | None = None, limit: int | None = None, batch_size: int = 32,
             reference: str = TORCH, callback: Callable[[dict], None] | None = None,
             progress: bool = True, label_map: Any = None) -> EvaluationResult:
    """Evaluate every variant of ``target`` (a model or a :class:`Variants`) on ``data``.

    ``data`` is anything :func:`hfmagic.data.load_data` reads; left out, the model's own held-out
    split (the demo's). ``label_map``: a dict from the data's labels to the model's names or ids,
    a JSON file holding one, a dict literal, or ``"ids"`` (:func:`hfmagic.data.read_label_map`).
    Ctrl-C stops early and returns what was finished, saying how much.
    ``progress``: show a progress bar (never with a ``callback``: a live dashboard shows its own).
    """
    # -- everything cheap is checked before anything heavy starts ---------------------------
    model = target.model if isinstance(target, Variants) else load_model(target)
    if model.task not in TASKS:
        raise UnsupportedError(f"%evaluate handles {' and '.join(TASKS)} models; {model.name} is "
                               f"{model.task}")
    if batch_size <= 0:
        raise UsageProblem(f"--batch-size must be a positive number, got {batch_size}")
    if limit is not None and limit <= 0:
        raise UsageProblem(f"--limit must be a positive number of examples, got {limit}")
    _check_variant_names(target, variants, reference)
    chosen_metrics = resolve(metrics, model.task)
    classify = model.task == "text-classification"
    label_map = read_label_map(label_map)
    if label_map is not None and not classify:
        raise UsageProblem(f"--label-map maps labels, and {model.name} is {model.task}, which predicts none; "
                           "leave it out")
    given = data
    if data is None:
        if model.dataset is None:
            raise UsageProblem(f"pass --data: {model.name} has no held-out dataset of its own")
        data = "demo" if model.source == "demo" else model.dataset
    data = load_data(data, split=split, text_column=text_column, label_column=label_column, limit=limit,
                     require_labels=classify)
    y_true = np.asarray(label_ids(data, model.labels, label_map)) if classify else None

    # -- the variants, the inputs, then one run per variant ---------------------------------
    vset = target if isinstance(target, Variants) else _build_variants(model, variants, reference, progress)
    names = _variant_names(vset, variants, reference)
    selected = [vset[n] for n in names]
    batches = make_batches(model, data.texts, batch_size)
    notes = list(data.notes)
    slow = [m.name for m in chosen_metrics if m.kind == "evaluate"]
    if slow:
        notes.append(f"the intervals of {', '.join(slow)} (evaluate metrics, one call per resample) come from "
                     f"{EVALUATE_RESAMPLES} bootstrap resamples, the others' from {RESAMPLES}")
    result = EvaluationResult(model_name=model.name, task=model.task, metrics=[m.name for m in chosen_metrics],
                              reference=reference, data_source=data.source, fingerprint=data.fingerprint,
                              labels=model.labels, notes=notes, weights_sha256=model.weights_sha256,
                              caption=data.caption)
    from hfmagic.store import default_store

    store = default_store()
    # the source as given (a file, a hub id; rerun reads it again), else what it was ("<DataFrame ...>")
    source = str(given) if isinstance(given, (str, os.PathLike)) else data.source
    params = {"target": model.source, "data": source, "split": split, "text_column": data.text_column,
              "label_column": data.label_column, "label_map": label_map, "metrics": metrics,
              "metric_names": result.metrics,
              "variants": names, "limit": limit, "batch_size": batch_size, "reference": reference}
    provenance = {"model": _model_provenance(model), "files": _files(selected), "dataset": data.fingerprint}
    with store.recording("evaluate", params, provenance) if store else contextlib.nullcontext() as run:
        result.run_id = run.id if run else None
        interrupted = _run_all(selected, model, data, y_true, batches, chosen_metrics, result, run, callback,
                               progress)
        if run:
            run.finish("interrupted" if interrupted else "ok", {"notes": result.notes, "flips": result.flip_rows})
    return result


def _check_variant_names(target, variants: list[str] | None, reference: str) -> None:
    """Unknown variant names fail before anything is built."""
    from hfmagic.export import VARIANT_NAMES

    known = target.names if isinstance(target, Variants) else list(VARIANT_NAMES)
    for name in list(variants or []) + [reference]:
        if name not in known:
            hint = "" if isinstance(target, Variants) else " (export others with %export_onnx, then pass its result)"
            raise UsageProblem(f"no variant {name!r}; choose from: {', '.join(known)}{hint}")


def _variant_names(vset: Variants, variants: list[str] | None, reference: str) -> list[str]:
    """The variants to run: those asked for (default all), the reference first and always."""
    for name in list(variants or []) + [reference]:
        vset[name]  # a name export_onnx did not build: UsageProblem listing what it did
    return [reference] + [n for n in (variants or vset.names) if n != reference]


def _build_variants(model: ModelHandle, variants: list[str] | None, reference: str, progress: bool) -> Variants:
    """torch alone needs no export; otherwise export_onnx builds (or takes from its cache) the
    variants asked for, or its default set plus the reference when none were named."""
    from hfmagic.export import DEFAULT_LEVELS, export_onnx, request_for

    if variants and set(variants) | {reference} == {TORCH}:
        return Variants(model, [Variant(TORCH, model)])
    names = list(variants or DEFAULT_LEVELS) + [reference]
    if "int8-static" in names and model.dataset is None:
        raise UsageProblem(f"int8-static needs calibration texts and {model.name} has none of its own; build it "
                           "with %export_onnx --quantize static --calibration DATA and evaluate that result")
    request = request_for(names, model.dataset)
    if not variants:
        request["quantize"] = "auto"  # the default set has the int8 twins
    return export_onnx(model, **request, progress=progress)


def label_ids(data: LabelledData, id2label: dict[int, str], label_map: dict | str | None = None) -> list[int]:
    """The dataset's labels as the model's class ids; a clear error listing both sides otherwise.

    ``label_map`` (what :func:`hfmagic.data.read_label_map` returns): ``"ids"`` takes every label
    as a class id (strings of digits included); a dict maps data labels to the model's names or
    ids, and labels it leaves out are matched as usual."""
    if not id2label:
        raise DataError("the model has no id2label in its config, so its predictions cannot be matched "
                        "to labels; save it with id2label set")
    values = data.labels
    model_side = ", ".join(f"{i}:{n}" for i, n in sorted(id2label.items()))
    if label_map == "ids":
        return _labels_as_ids(values, id2label, model_side)
    mapped = _mapped_ids(label_map or {}, id2label, model_side)
    generic = all(re.fullmatch(r"LABEL_\d+", n) for n in id2label.values())
    names = data.label_names if all(isinstance(v, int) for v in values) and not generic else None
    out, unknown = [], []
    for v in values:
        name = names[v] if names else v  # a ClassLabel: match the names it stands for
        key = next((k for k in (str(v), str(name)) if k in mapped), None)
        found = mapped[key] if key is not None else _model_id(name, id2label)
        if found is None:
            unknown.append(name)
        out.append(found)
    if unknown:
        shown = sorted(set([names[v] for v in values] if names else values), key=str)
        data_side = ", ".join(map(str, shown))
        missing = ", ".join(map(repr, sorted(set(unknown), key=str)))
        if label_map:
            raise DataError(f"labels neither --label-map nor the model's id2label know: {missing}; add them "
                            f"to the map (the data's labels: {data_side}; the model's id2label: {model_side})")
        if all(isinstance(v, str) and v.strip().isdigit() for v in unknown):
            example = json.dumps({u: id2label.get(int(u), id2label[min(id2label)])
                                  for u in sorted(set(unknown), key=str)[:2]})
            raise DataError(f"the data's labels are strings of digits ({', '.join(map(repr, shown))}), which "
                            "look like class ids, "
                            f"while the model's id2label names its classes ({model_side}); if they are its ids, "
                            f"pass --label-map ids, or else map each to a name: --label-map '{example}' (or a "
                            "dict variable, or a JSON file)")
        raise DataError(f"labels the model does not know: {missing}. The data's labels: {data_side}; the "
                        f"model's id2label: {model_side}. Rename them in the data, map them with --label-map "
                        "(or pick another --label-column)")
    return out


def _model_id(label, id2label: dict[int, str], digits: bool = False) -> int | None:
    """The model's class id for a label: an id it has, or one of its names (case aside); with
    ``digits``, a string of digits is an id too."""
    if isinstance(label, int):
        return label if label in id2label else None
    by_name = {n: i for i, n in id2label.items()}
    found = by_name.get(label, {n.lower(): i for i, n in id2label.items()}.get(label.lower()))
    if found is None and digits and label.strip().isdigit() and int(label) in id2label:
        found = int(label)
    return found


def _mapped_ids(label_map: dict, id2label: dict[int, str], model_side: str) -> dict[str, int]:
    """--label-map's targets as class ids, each checked against the model's labels."""
    out = {}
    for key, target in label_map.items():
        out[key] = _model_id(target, id2label, digits=True)
        if out[key] is None:
            raise DataError(f"--label-map maps {key!r} to {target!r}, which is not one of the model's labels; "
                            f"its id2label: {model_side}")
    return out


def _labels_as_ids(values: list, id2label: dict[int, str], model_side: str) -> list[int]:
    """--label-map ids: every label (an int, or a string of digits) is the model's class id."""
    words = sorted({v for v in values if not isinstance(v, int) and not v.strip().isdigit()}, key=str)
    if words:
        raise DataError(f"--label-map ids takes the data's labels as class ids, but {', '.join(map(repr, words[:5]))} "
                        "are not whole numbers; map them to the model's labels with a dict instead")
    ids = [int(v) for v in values]
    outside = sorted(set(ids) - set(id2label))
    if outside:
        raise DataError(f"--label-map ids: the data's labels {', '.join(map(str, outside))} are not class ids of "
                        f"the model; its id2label: {model_side}")
    return ids


# -- inputs ----------------------------------------------------------------------------------
def make_batches(model: ModelHandle, texts: list[str], batch_size: int) -> list[tuple[np.ndarray, dict]]:
    """(example indices, padded numpy inputs) per batch, longest first: each batch padded to its own."""
    tok = model.tokenizer()
    max_length = tok.model_max_length if tok.model_max_length < 1_000_000 else model.max_positions
    lengths = np.array([len(ids) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tok([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True,
                  return_tensors="np")
        batches.append((idx, {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}))
    return batches


# -- running ---------------------------------------------------------------------------------
class _Runner:
    """One variant loaded on its backend (the ones %benchmark measures with): logits, or pooled
    embeddings, per batch."""

    def __init__(self, variant: Variant, task: str):
        from hfmagic.backends import get_backend
        from hfmagic.config import settings

        self.variant, self.task = variant, task
        self.backend = get_backend("torch" if variant.kind == TORCH else "onnxruntime")()
        self.backend.load(variant, settings().resolved_threads())

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.backend.input_names if n not in inputs]
        if missing:
            raise BuildError(f"{self.variant.name} wants inputs {', '.join(missing)} that the tokenizer does "
                             "not make; re-export it from this model's folder")
        out = self.backend.run(self.backend.prepare({n: inputs[n] for n in self.backend.input_names}))
        raw = np.asarray(out[0].numpy() if hasattr(out[0], "numpy") else out[0], dtype=np.float64)
        if self.task == "text-classification":
            return raw  # logits (the first output of a classifier, in transformers and in the export)
        mask = inputs["attention_mask"][..., None].astype(np.float64)  # last_hidden_state: mean-pool it
        return (raw * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)

    def close(self) -> None:
        self.backend.close()


def _run_all(selected, model, data, y_true, batches, chosen_metrics, result, run, callback, progress) -> bool:
    """Run every variant in turn; True when Ctrl-C stopped it (what finished is kept)."""
    from tqdm.auto import tqdm

    n, total = len(data), len(selected) * len(batches)
    finished = 0
    bar = tqdm(total=len(selected) * n, unit="example", desc="evaluate", leave=False,
               disable=callback is not None or not progress)  # a live dashboard shows progress itself
    reference_out = None
    try:
        for variant in selected:
            row = {"variant": variant.name, "status": variant.error or "ok", "n": n}
            if variant.ok:
                try:
                    outputs, seconds, load_s = _outputs(variant, model.task, batches, n, bar, callback,
                                                        finished, total)
                    row.update(load_s=load_s, seconds=seconds, samples_per_s=n / seconds if seconds else None)
                    if variant.name == result.reference:
                        reference_out = outputs
                    row.update(_figures(variant.name, outputs, reference_out, y_true, data, chosen_metrics,
                                        result, model.labels))
                except UsageProblem:
                    raise
                except Exception as exc:  # this variant failed to run: it stays, with the reason
                    first_line = (str(exc).strip().splitlines() or [""])[0]
                    row["status"] = f"failed: {type(exc).__name__}: {first_line}"
            if variant.name == result.reference and row["status"] != "ok":
                result.notes.append(f"the reference {variant.name} did not run ({row['status']}); no "
                                    "comparisons with it")
            finished += len(batches)
            bar.update(finished // len(batches) * n - bar.n)
            result.rows.append(row)
            if run:
                run.add_row(row)
            if callback:
                callback({"type": "row", "row": row})
    except KeyboardInterrupt:
        result.notes.append(f"interrupted after {len(result.rows)} of {len(selected)} variants; "
                            f"{', '.join(v.name for v in selected[len(result.rows):])} not evaluated")
        return True
    finally:
        bar.close()
    return False


def _outputs(variant, task, batches, n, bar, callback, done, total):
    """The variant's outputs in data order, seconds spent in the model, seconds to load it."""
    start = time.perf_counter()
    runner = _Runner(variant, task)
    load_s = time.perf_counter() - start
    outputs, seconds = None, 0.0
    bar.set_description(f"evaluate {variant.name}")
    try:
        for i, (idx, inputs) in enumerate(batches):
            t0 = time.perf_counter()
            out = runner.run(inputs)
            seconds += time.perf_counter() - t0
            if outputs is None:
                outputs = np.empty((n,) + out.shape[1:], dtype=np.float64)
            outputs[idx] = out
            bar.update(len(idx))
            if callback:
                callback({"type": "progress", "done": done + i + 1, "total": total,
                          "label": f"{variant.name}: batch {i + 1}/{len(batches)}"})
    finally:
        runner.close()
    return outputs, seconds, load_s


def _figures(name, outputs, reference_out, y_true, data, chosen_metrics, result, labels) -> dict:
    """Metrics with intervals and the comparison with the reference, for one variant's outputs."""
    row: dict[str, Any] = {}
    first = chosen_metrics[0].name
    if y_true is not None:
        pred = outputs.argmax(1)
        result.predictions[name] = pred
        classes = max(outputs.shape[1], max(labels, default=-1) + 1)  # every id either side can take
        for metric in chosen_metrics:
            row[metric.name] = metric.point(y_true, pred)
            row[f"{metric.name}_low"], row[f"{metric.name}_high"] = bootstrap(metric, y_true, pred, classes)
    if reference_out is None:
        return row
    if y_true is not None:
        ref_pred = reference_out.argmax(1)
        changed = np.flatnonzero(pred != ref_pred)
        row.update(agreement=1 - len(changed) / len(pred), flip_rate=len(changed) / len(pred), flips=len(changed))
        result.add_flips(name, changed, data, y_true, ref_pred, reference_out, pred, outputs)
    else:
        cos = _cosines(outputs, reference_out)
        row["cosine"] = float(cos.mean())
        row["cosine_low"], row["cosine_high"] = bootstrap(Metric("cosine", "embedding"), None, cos, 0)
    row["max_logit_diff"] = float(np.abs(outputs - reference_out).max())
    ref_row = result.rows[0] if result.rows else row  # the reference runs first
    ref_value = ref_row.get(first)
    if ref_value:
        row["pct_of_reference"] = 100 * row[first] / ref_value
        if name != result.reference:
            row["gate"] = "pass" if row["pct_of_reference"] >= GATE - 1e-9 else "fail"  # 99% exactly passes
    return row


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.clip(norms, 1e-12, None)


def _model_provenance(model: ModelHandle) -> dict:
    return {"source": model.source, "path": str(model.path), "revision": model.revision,
            "weights_sha256": model.weights_sha256, "task": model.task, "name": model.name}


def _files(selected: list[Variant]) -> dict:
    return {v.name: v.sha256 or file_sha256(v.path) for v in selected if v.path is not None and v.path.exists()}
