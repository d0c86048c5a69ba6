"""Predicting one of several classes: what text classification and image classification share in
%evaluate (scikit-learn's metrics on the argmax class with bootstrap intervals, flips, agreement),
and the small helpers every evaluator uses (softmax, the first named output, percentile intervals,
a data fingerprint, agreement figures)."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from hfmagic.data.metrics import bootstrap, resolve
from hfmagic.tasks.base import Evaluator


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def first(named: dict, *names: str) -> np.ndarray:
    for name in names:
        if name in named:
            return np.asarray(named[name], dtype=np.float64)
    return np.asarray(next(iter(named.values())), dtype=np.float64)


def percentiles(samples: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def fingerprint(payload, rows: int, columns: list[str], source: str, split=None) -> dict:
    digest = hashlib.sha256()
    for item in payload:
        digest.update(json.dumps(item, default=str).encode())
        digest.update(b"\n")
    return {"sha256": digest.hexdigest(), "rows": rows, "columns": columns, "source": source, "split": split}


def class_answers(model, prediction: dict) -> list[dict]:
    """Each example's class as a served answer: its label (the config's id2label) and softmax score."""
    probs = softmax(np.asarray(prediction["logits"], dtype=np.float64))
    labels = model.labels or {}
    return [{"label": labels.get(int(k), str(int(k))), "score": float(p[int(k)])}
            for k, p in zip(prediction["pred"], probs)]


def max_diff(a: list, b: list) -> float:
    return float(max((np.abs(np.asarray(x) - np.asarray(y)).max() for x, y in zip(a, b) if np.size(x)), default=0.0))


def agreement(flips: int, n: int, max_diff: float) -> dict:
    """The comparison figures every evaluator reports against the reference."""
    return {"agreement": 1 - flips / n, "flip_rate": flips / n, "flips": flips, "max_logit_diff": max_diff}


class ClassificationEvaluator(Evaluator):
    """Scoring a class per example: scikit-learn's metrics on the argmax class (bootstrap intervals
    over the examples), agreement and flips against the reference, another model's classes
    renumbered by name. A task adds how its examples are read and batched (``read``,
    ``batches``) and what a flip shows of one (``example``)."""

    def metrics(self, names, model):
        return resolve(list(names or self.task.DEFAULT_METRICS) or None)

    def outputs(self, named: dict, feed: dict) -> list:
        return list(first(named, "logits"))

    def finish(self, model, data, per_row):
        logits = np.stack(per_row)
        return {"logits": logits, "pred": logits.argmax(1)}

    def score(self, data, prediction, metrics) -> dict:
        y_true, pred, labels = data.examples["y_true"], prediction["pred"], data.examples.get("labels", {})
        classes = max(prediction["logits"].shape[1], int(y_true.max(initial=-1)) + 1)
        row = {}
        for metric in metrics:
            row[metric.name] = metric.point(y_true, pred)
            row[f"{metric.name}_low"], row[f"{metric.name}_high"] = bootstrap(metric, y_true, pred, classes)
        return row

    def align(self, reference, reference_labels: dict, labels: dict):
        """Another model's prediction renumbered into this model's class ids, by label name (two
        models may order the same classes differently)."""
        if reference_labels == labels:
            return reference
        ids = {name: i for i, name in labels.items()}
        if sorted(reference_labels.values()) != sorted(ids):
            return (f"its labels ({', '.join(sorted(labels.values()))}) are not the reference's "
                    f"({', '.join(sorted(reference_labels.values()))})")
        order = [next(r for r, n in reference_labels.items() if n == labels[i]) for i in sorted(labels)]
        return {**reference, "pred": np.array([ids[reference_labels[int(p)]] for p in reference["pred"]]),
                "logits": reference["logits"][:, order]}

    def compare(self, data, reference, prediction, variant: str, names=None) -> tuple[dict, list[dict]]:
        ref_pred, pred = reference["pred"], prediction["pred"]
        changed = np.flatnonzero(pred != ref_pred)
        row = agreement(len(changed), len(pred), float(np.abs(prediction["logits"] - reference["logits"]).max()))
        names = names or {}
        y_true = data.examples["y_true"]
        ref_prob, prob = softmax(reference["logits"][changed]), softmax(prediction["logits"][changed])
        flips = [{"variant": variant, "row": i, **self.example(data, i), "label": names.get(int(y_true[i])),
                  "reference": names.get(int(ref_pred[i])), "prediction": names.get(int(pred[i])),
                  "confidence": float(prob[j, pred[i]]), "reference_confidence": float(ref_prob[j, ref_pred[i]])}
                 for j, i in enumerate(changed.tolist())]
        return row, flips

    def example(self, data, i: int) -> dict:
        """What a flip shows of example ``i`` (text classification: its text; an image: its name and
        thumbnail)."""
        raise NotImplementedError
