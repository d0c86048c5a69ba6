"""A classical text-classification baseline: TF-IDF features and a logistic regression.

``TfidfBaseline.train(texts, labels, label_names)`` fits scikit-learn's
``Pipeline(TfidfVectorizer(sublinear_tf=True, min_df=2), LogisticRegression(C=10))`` and records
the training time and vocabulary size. ``predict_proba(texts)`` and ``logits(texts)`` give one
column per label in ``label_names`` order (the model's label order, id 0 first), whatever order the
labels arrived in.

``save(folder)`` writes no pickle: ``baseline.json`` (label names, the vectorizer's and the
regression's parameters, training figures), ``vocabulary.json`` (term -> column), and
``idf.npy``, ``coef.npy``, ``intercept.npy`` (loaded with ``allow_pickle=False``). ``load(folder)``
rebuilds the scikit-learn objects from them, so a saved baseline carries no code and loading one
runs none. ``sha256`` is the digest of those files (names and contents), the same on save and
load: the baseline's identity in result rows. As a model hfmagic loads it is :mod:`hfmagic.tasks.text.tfidf`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hfmagic.core.errors import DataError, UsageProblem

FORMAT = 1
META, VOCAB = "baseline.json", "vocabulary.json"
ARRAYS = ("idf", "coef", "intercept")
VECTORIZER = {"sublinear_tf": True, "min_df": 2}
REGRESSION = {"C": 10.0, "max_iter": 5000}
# vectorizer parameters that are plain data and so can be written to JSON and read back
_PLAIN = (str, int, float, bool, type(None))


class TfidfBaseline:
    """A fitted TF-IDF + logistic-regression classifier (build it with ``train`` or ``load``)."""

    def __init__(self, pipeline, label_names: Sequence[str], info: dict):
        self.pipeline = pipeline
        self.label_names = [str(n) for n in label_names]
        self.info = dict(info)  # train_s, vocab_size, n_train, sklearn version
        self.sha256: str | None = info.get("sha256")

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence, label_names: Sequence[str], *,
              vectorizer: dict | None = None, regression: dict | None = None) -> TfidfBaseline:
        """Fit on ``texts`` with ``labels`` (names from ``label_names``, or ids into it).

        Raises ``DataError`` for empty or mismatched inputs, a label outside ``label_names`` or a
        label name with no training text (its column could not be learned).
        """
        from sklearn import __version__ as sklearn_version
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        texts = _texts(texts)
        names = [str(n) for n in label_names]
        if len(set(names)) != len(names) or len(names) < 2:
            raise DataError(f"label names must be two or more distinct names, got {names}")
        if len(labels) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(labels)} labels; give one label per text")
        y = _label_ids(labels, names)
        missing = sorted(set(range(len(names))) - set(y.tolist()))
        if missing:
            raise DataError(f"no training text for label(s) {[names[i] for i in missing]}; "
                            "give every label at least one example or drop it from the names")
        pipeline = Pipeline([
            ("tfidf", TfidfVectorizer(**{**VECTORIZER, **(vectorizer or {})})),
            ("logreg", LogisticRegression(**{**REGRESSION, **(regression or {})})),
        ])
        start = time.perf_counter()
        try:
            pipeline.fit(texts, y)
        except ValueError as exc:  # e.g. min_df leaves no terms
            raise DataError(f"cannot fit the TF-IDF baseline: {exc}; give more (or longer) texts") from exc
        train_s = time.perf_counter() - start
        info = {"train_s": train_s, "vocab_size": len(pipeline.named_steps["tfidf"].vocabulary_),
                "n_train": len(texts), "sklearn": sklearn_version}
        return cls(pipeline, names, info)

    # -- scoring ----------------------------------------------------------------------------------
    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """``(n_texts, n_labels)`` decision scores; their softmax is ``predict_proba``.

        For two labels scikit-learn keeps one score ``d``; it is returned as ``[0, d]`` so that the
        softmax of a row equals ``predict_proba`` as for any number of labels.
        """
        scores = self.pipeline.decision_function(_texts(texts))
        if scores.ndim == 1:
            scores = np.column_stack([np.zeros_like(scores), scores])
        return scores

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``(n_texts, n_labels)`` class probabilities, columns in ``label_names`` order."""
        return self.pipeline.predict_proba(_texts(texts))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Label ids (indices into ``label_names``)."""
        return np.argmax(self.logits(texts), axis=1)

    @property
    def vocab_size(self) -> int:
        return int(self.info["vocab_size"])

    @property
    def train_s(self) -> float | None:
        return self.info.get("train_s")

    def __repr__(self) -> str:
        train = f", trained in {self.train_s:.2f} s" if self.train_s is not None else ""
        return (f"TfidfBaseline({len(self.label_names)} labels, vocabulary {self.vocab_size:,}"
                f"{train}, sha256 {(self.sha256 or 'unsaved')[:12]})")

    # -- files ------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the baseline to ``folder`` as JSON and ``.npy`` files (no pickle); set ``sha256``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tfidf, logreg = self.pipeline.named_steps["tfidf"], self.pipeline.named_steps["logreg"]
        params = tfidf.get_params()
        bad = sorted(k for k, v in params.items() if k not in ("dtype", "vocabulary", "ngram_range")
                     and not isinstance(v, _PLAIN))
        if bad:
            raise UsageProblem(f"vectorizer parameters {bad} are code, not data, and cannot be saved "
                               "without pickle; train with plain-valued parameters")
        params["dtype"] = np.dtype(params["dtype"]).name
        params["ngram_range"] = list(params["ngram_range"])
        params.pop("vocabulary")
        meta = {"format": FORMAT, "kind": "tfidf-logreg", "label_names": self.label_names,
                "vectorizer": params,
                "regression": {k: v for k, v in logreg.get_params().items() if isinstance(v, _PLAIN)},
                "classes": [int(c) for c in logreg.classes_],
                "info": {k: v for k, v in self.info.items() if k != "sha256"}}
        vocabulary = {term: int(col) for term, col in tfidf.vocabulary_.items()}
        (folder / META).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
        (folder / VOCAB).write_text(json.dumps(vocabulary, sort_keys=True, ensure_ascii=False), encoding="utf-8")
        np.save(folder / "idf.npy", np.asarray(tfidf.idf_))
        np.save(folder / "coef.npy", np.asarray(logreg.coef_))
        np.save(folder / "intercept.npy", np.asarray(logreg.intercept_))
        self.sha256 = folder_sha256(folder)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TfidfBaseline:
        """Rebuild a baseline that ``save`` wrote; raises ``DataError`` for a missing or bad file."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        folder = Path(folder)
        try:
            meta = json.loads((folder / META).read_text(encoding="utf-8"))
            vocabulary = json.loads((folder / VOCAB).read_text(encoding="utf-8"))
            arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in ARRAYS}
        except (OSError, ValueError) as exc:
            raise DataError(f"{folder} is not a saved TF-IDF baseline ({exc}); "
                            "save one with TfidfBaseline.save") from exc
        if meta.get("kind") != "tfidf-logreg" or meta.get("format") != FORMAT:
            raise DataError(f"{folder / META} is not a format-{FORMAT} TF-IDF baseline; save it again")
        params = dict(meta["vectorizer"])
        params["dtype"] = np.dtype(params["dtype"]).type
        params["ngram_range"] = tuple(params["ngram_range"])
        tfidf = TfidfVectorizer(vocabulary=vocabulary, **params)
        tfidf.idf_ = arrays["idf"]  # also fixes the vocabulary (sklearn's documented setter)
        logreg = LogisticRegression(**meta["regression"])
        logreg.classes_ = np.asarray(meta["classes"])
        logreg.coef_ = arrays["coef"]
        logreg.intercept_ = arrays["intercept"]
        logreg.n_features_in_ = arrays["coef"].shape[1]
        if arrays["coef"].shape[1] != len(vocabulary) or len(arrays["idf"]) != len(vocabulary):
            raise DataError(f"{folder}: vocabulary, idf and coefficients disagree in size; save it again")
        info = {**meta["info"], "sha256": folder_sha256(folder)}
        return cls(Pipeline([("tfidf", tfidf), ("logreg", logreg)]), meta["label_names"], info)


def folder_sha256(folder: str | Path) -> str:
    """SHA-256 over the saved files' names and contents, in a fixed order."""
    digest = hashlib.sha256()
    for name in (META, VOCAB, *(f"{a}.npy" for a in ARRAYS)):
        data = (Path(folder) / name).read_bytes()
        digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()


def _texts(texts) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise DataError("no texts given; give at least one")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise DataError(f"text {bad} is {type(texts[bad]).__name__}, not a string; give strings")
    return texts


def _label_ids(labels, names: list[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    ids = []
    for row, label in enumerate(labels):
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if not 0 <= int(label) < len(names):
                raise DataError(f"label {row} is id {label}, outside the {len(names)} label names")
            ids.append(int(label))
        elif str(label) in index:
            ids.append(index[str(label)])
        else:
            raise DataError(f"label {row} is {label!r}, not one of {names}; give names or ids")
    return np.asarray(ids, dtype=np.int64)


def files(folder: Path) -> tuple[Path, ...]:
    """The files a saved baseline is made of (its "weights")."""
    return tuple(Path(folder) / n for n in (META, VOCAB, *(f"{a}.npy" for a in ARRAYS)))


def parameters(folder: Path) -> int:
    """Learned numbers: the coefficients, the intercepts and the idf weights."""
    return sum(int(np.load(Path(folder) / f"{a}.npy", mmap_mode="r", allow_pickle=False).size) for a in ARRAYS)
