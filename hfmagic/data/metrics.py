"""Metrics for ``%evaluate``: scikit-learn point estimates, bootstrap intervals, ``evaluate`` metrics.

Built in (offline, scikit-learn): ``accuracy``, ``precision``/``recall``/``f1`` with ``_macro``,
``_micro`` or ``_weighted`` (a bare name means macro), ``mcc``; and ``cosine`` (similarity of a
variant's mean-pooled embeddings to the reference's) for feature-extraction models. ``evaluate:NAME``
or the path of a local metric script loads an ``evaluate`` metric.

Intervals are percentile bootstrap 95% intervals over the examples, with the same resamples (a
fixed seed) for every variant. Resampled label metrics are computed from one confusion matrix per
resample in numpy (a thousand scikit-learn calls per metric would take seconds); the formulas are
scikit-learn's, with ``zero_division=0``, and a test checks them against scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hfmagic.core.errors import OfflineError, UnsupportedError, UsageProblem
from hfmagic.data.tables import hub_reachable

AVERAGES = ("macro", "micro", "weighted")
LABEL_METRICS = ["accuracy", "mcc"] + [f"{m}_{a}" for m in ("precision", "recall", "f1") for a in AVERAGES]
ALIASES = {"precision": "precision_macro", "recall": "recall_macro", "f1": "f1_macro",
           "matthews_correlation": "mcc", "acc": "accuracy"}
EMBEDDING_METRICS = ["cosine"]
RESAMPLES = 1000
EVALUATE_RESAMPLES = 200  # an evaluate metric is one Python call per resample: fewer of them
SEED = 0
CHUNK = 100  # resamples at a time, to bound memory on large datasets


@dataclass
class Metric:
    """A metric to report: its column name and how it is computed."""

    name: str
    kind: str  # "label" (built in), "embedding" (cosine), "evaluate" (an evaluate module)
    module: Any = None  # the loaded evaluate metric
    key: str | None = None  # which value of the evaluate metric's result to report

    def point(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """The value on all examples (label metrics; cosine is a mean, taken by the caller)."""
        if self.kind == "label":
            return sklearn_metric(self.name, y_true, y_pred)
        result = self._compute(y_true, y_pred)
        numbers = [k for k, v in result.items() if isinstance(v, (int, float, np.number))]
        if self.key not in numbers:
            if len(numbers) != 1:
                raise UsageProblem(f"the metric {self.name} reports {', '.join(result)}; hfmagic reports one "
                                   "number per metric (wrap it in a script that returns one)")
            self.key = numbers[0]
        return float(result[self.key])

    def _compute(self, y_true, y_pred) -> dict:
        return self.module.compute(predictions=[int(p) for p in y_pred], references=[int(y) for y in y_true])


def resolve(names: list[str] | None, embeddings: bool = False) -> list[Metric]:
    """The metrics asked for, checked (and ``evaluate`` ones loaded) before any heavy work; label
    metrics, or with ``embeddings`` (the feature-extraction task's evaluator) the cosine."""
    if embeddings:
        names = names or ["cosine"]
        wrong = [n for n in names if n not in EMBEDDING_METRICS]
        if wrong:
            raise UnsupportedError(f"{', '.join(wrong)} needs labels, and a feature-extraction model predicts "
                                   "none; use --metrics cosine (similarity to the reference's embeddings)")
        return [Metric("cosine", "embedding")]
    names = names or ["accuracy", "f1_macro"]
    out: list[Metric] = []
    for raw in names:
        name = ALIASES.get(raw, raw)
        if name in LABEL_METRICS:
            out.append(Metric(name, "label"))
        elif name in EMBEDDING_METRICS:
            raise UnsupportedError("cosine compares embeddings of a feature-extraction model; for a classifier "
                                   f"use {', '.join(LABEL_METRICS)}")
        elif name.startswith("evaluate:") or Path(name).expanduser().exists() or name.endswith(".py"):
            out.append(load_evaluate_metric(name))
        else:
            raise UsageProblem(f"unknown metric {raw!r}; use {', '.join(LABEL_METRICS)}, evaluate:NAME, "
                               "or the path of a local evaluate metric script")
    seen = [m.name for m in out]
    twice = sorted({n for n in seen if seen.count(n) > 1})
    if twice:
        raise UsageProblem(f"metric {', '.join(twice)} asked for twice; list each once")
    return out


def load_evaluate_metric(spec: str) -> Metric:
    """``evaluate:NAME`` (needs the hub: checked quickly, never hangs) or a local script path."""
    if spec.startswith("evaluate:"):
        name = spec.split(":", 1)[1]
        if not name:
            raise UsageProblem("evaluate: needs a metric name, e.g. evaluate:accuracy")

        reachable, why = hub_reachable()
        if not reachable:
            raise OfflineError(f"{spec} needs the Hugging Face hub to download the metric's script and the "
                               f"hub cannot be reached ({why}); use the built-in {ALIASES.get(name, name)} "
                               "(scikit-learn, offline) or the path of a local metric script")
        where = name
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise UsageProblem(f"no metric script at {spec}; give the path of an evaluate metric script "
                               "(or its folder)")
        name, where = path.stem if path.is_file() else path.name, str(path)
    import evaluate

    try:
        module = evaluate.load(where)
    except (ConnectionError, OSError) as exc:
        raise OfflineError(f"could not load the metric {spec} ({str(exc).splitlines()[0]}); use a built-in "
                           "metric or a local metric script") from None
    except Exception as exc:  # a broken script: its own error, in one line
        raise UsageProblem(f"could not load the metric {spec}: {type(exc).__name__}: {exc}") from None
    return Metric(name, "evaluate", module=module, key=name)


# -- scikit-learn point estimates -------------------------------------------------------------
def sklearn_metric(name: str, y_true, y_pred) -> float:
    from sklearn import metrics as sk

    if name == "accuracy":
        return float(sk.accuracy_score(y_true, y_pred))
    if name == "mcc":
        return float(sk.matthews_corrcoef(y_true, y_pred))
    kind, average = name.split("_")
    func = {"precision": sk.precision_score, "recall": sk.recall_score, "f1": sk.f1_score}[kind]
    return float(func(y_true, y_pred, average=average, zero_division=0))


# -- the bootstrap ------------------------------------------------------------------------------
def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED):
    """Chunks of bootstrap index arrays, the same for every call with the same n and seed."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        size = min(CHUNK, resamples - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def confusion_stack(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """One k x k confusion matrix (rows true, columns predicted) per row of index arrays' samples."""
    b = y_true.shape[0]
    cells = (np.arange(b)[:, None] * k * k + y_true * k + y_pred).ravel()
    return np.bincount(cells, minlength=b * k * k).reshape(b, k, k).astype(np.float64)


def from_confusion(name: str, c: np.ndarray) -> np.ndarray:
    """scikit-learn's formulas (zero_division=0) on a stack of confusion matrices (b, k, k)."""
    tp = np.diagonal(c, axis1=1, axis2=2)
    true_n, pred_n = c.sum(2), c.sum(1)
    total = c.sum((1, 2))
    if name == "accuracy":
        return tp.sum(1) / total
    if name == "mcc":
        correct = tp.sum(1)
        cov_tp = correct * total - (true_n * pred_n).sum(1)
        cov_pp = total ** 2 - (pred_n ** 2).sum(1)
        cov_tt = total ** 2 - (true_n ** 2).sum(1)
        denom = np.sqrt(cov_tt * cov_pp)
        return np.divide(cov_tp, denom, out=np.zeros_like(cov_tp), where=denom > 0)
    kind, average = name.split("_")
    if average == "micro":
        num, den = tp.sum(1), {"precision": pred_n, "recall": true_n, "f1": (true_n + pred_n) / 2}[kind].sum(1)
        return _safe(num, den)
    per_class = {"precision": _safe(tp, pred_n), "recall": _safe(tp, true_n),
                 "f1": _safe(2 * tp, true_n + pred_n)}[kind]
    if average == "macro":  # over the labels present in y_true or y_pred, as scikit-learn does
        present = (true_n + pred_n) > 0
        return _safe((per_class * present).sum(1), present.sum(1).astype(np.float64))
    return _safe((per_class * true_n).sum(1), true_n.sum(1))


def _safe(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def bootstrap(metric: Metric, y_true: np.ndarray, values: np.ndarray, k: int) -> tuple[float, float]:
    """The 95% percentile interval of ``metric`` over resampled examples.

    ``values`` are predicted label ids (label metrics) or per-example cosines (``cosine``).
    """
    n = len(values)
    samples: list[np.ndarray] = []
    if metric.kind == "evaluate":
        for idx in resample_indices(n, EVALUATE_RESAMPLES):
            samples.append(np.array([metric._compute(y_true[i], values[i])[metric.key] for i in idx], dtype=float))
    elif metric.kind == "embedding":
        for idx in resample_indices(n):
            samples.append(values[idx].mean(1))
    else:
        for idx in resample_indices(n):
            samples.append(from_confusion(metric.name, confusion_stack(y_true[idx], values[idx], k)))
    low, high = np.percentile(np.concatenate(samples), [2.5, 97.5])
    return float(low), float(high)
