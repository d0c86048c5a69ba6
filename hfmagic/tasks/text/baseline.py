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
load: the baseline's identity in result rows.
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


# -- a baseline as a model hfmagic loads (``%load_model tfidf --data D``) ---------------------------

NAME = "tfidf"  # the %load_model source that trains one
CONFIG_KIND = "tfidf-logreg"  # config.json's "hfmagic_baseline": what loads the folder
ARCHITECTURE = "TfidfLogisticRegression"
TEST_FILE = "test.jsonl"
HOLDOUT, SEED = 0.2, 0


def build(data, text_column: str | None = None, label_column: str | None = None, split: str | None = None,
          label_names: Sequence[str] | None = None) -> tuple[Path, str]:
    """Train the baseline on ``data``'s training split and save it as a model folder in the cache
    (once per data and recipe): the baseline's files, a ``config.json`` (id2label, vocabulary size)
    and the held-out split it did not see (``test.jsonl``). Returns (the folder, what it was
    trained on).

    The training split: for ``demo`` (or ``demo-small``) the demo's own 80% split, so the baseline
    is scored on the same 445 held-out articles; for a DatasetDict its ``train`` split (held out:
    ``test``, else ``validation``); for a single table a stratified 80/20 split (seed 0) whose 20%
    is kept as its held-out data.
    """
    import pandas as pd

    from hfmagic.core.config import settings
    from hfmagic.data.tables import load_data

    train, test, source = _splits(data, split)
    got = load_data(train, text_column=text_column, label_column=label_column)
    held = load_data(test, text_column=got.text_column, label_column=got.label_column) if test is not None else None
    if held is None:
        from sklearn.model_selection import train_test_split

        frame = pd.DataFrame({"text": got.texts, "label": got.labels})
        counts = frame["label"].value_counts()
        if len(counts) < 2 or counts.min() < 2 or round(len(frame) * HOLDOUT) < len(counts):
            few = ", ".join(f"{label!r} ({n})" for label, n in counts.items() if n < 2) or \
                f"{len(frame)} rows for {len(counts)} labels"
            raise DataError(f"the tfidf baseline holds out a stratified {HOLDOUT:.0%} of the data, which needs two "
                            f"labels or more and at least 2 examples of each (here: {few}); pass more labelled "
                            "texts, or a DatasetDict with train and test splits")
        tr, te = train_test_split(frame, test_size=HOLDOUT, stratify=frame["label"], random_state=SEED)
        got = load_data(tr.reset_index(drop=True), text_column="text", label_column="label")
        held = load_data(te.reset_index(drop=True), text_column="text", label_column="label")
        source += f" (a stratified {1 - HOLDOUT:.0%} split, seed {SEED}; the other {HOLDOUT:.0%} held out)"
    names = list(label_names) if label_names else sorted({str(v) for v in got.labels}, key=str)
    recipe = {"format": FORMAT, "vectorizer": VECTORIZER, "regression": REGRESSION,
              "train": got.fingerprint["sha256"], "test": held.fingerprint["sha256"], "labels": names}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    folder = settings().cache_path / "baselines" / f"{NAME}-{key}"
    if (folder / "config.json").is_file():
        return folder, source
    tmp = folder.with_name(f".tmp-{folder.name}")
    try:
        model = TfidfBaseline.train(got.texts, [str(v) for v in got.labels], names)
    except ValueError as exc:  # scikit-learn's: no terms left after min_df, a single class, ...
        raise DataError(f"the tfidf baseline could not be trained on {source}: {str(exc).splitlines()[0]}; "
                        "pass more (or longer) labelled texts") from None
    model.save(tmp)
    config = {"model_type": NAME, "architectures": [ARCHITECTURE], "hfmagic_baseline": CONFIG_KIND,
              "id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in enumerate(names)},
              "vocab_size": model.vocab_size, "train_s": model.train_s, "n_train": len(got.texts),
              "trained_on": source}
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    pd.DataFrame({"text": held.texts, "label": held.labels}).to_json(tmp / TEST_FILE, orient="records", lines=True)
    tmp.replace(folder)
    return folder, source


def _splits(data, split):
    """(training data, held-out data or None, a description) of what ``build`` is given."""
    import sys

    if isinstance(data, str) and data in ("demo", "demo-small"):
        from hfmagic.tasks.text import demo

        train, test = demo.split()
        return train, test, f"{data}'s training split ({len(train)} BBC News articles)"
    datasets = sys.modules.get("datasets")
    if datasets is not None and isinstance(data, datasets.DatasetDict):
        if "train" not in data:
            raise DataError(f"the DatasetDict has the splits {', '.join(data)}, and none is named train; pass "
                            "one split as a Dataset to split it 80/20")
        test = next((data[s] for s in ("test", "validation") if s in data), None)
        return data["train"], test, "the train split"
    if data is None:
        raise UsageProblem("the TF-IDF baseline trains on labelled texts: pass --data (a DataFrame, a "
                           "Dataset, a CSV/JSON/Parquet file, or demo)")
    return data, None, str(data) if isinstance(data, (str, Path)) else f"<{type(data).__name__}>"


def is_baseline(config: dict) -> bool:
    return config.get("hfmagic_baseline") == CONFIG_KIND


def files(folder: Path) -> tuple[Path, ...]:
    """The files a saved baseline is made of (its "weights")."""
    return tuple(Path(folder) / n for n in (META, VOCAB, *(f"{a}.npy" for a in ARRAYS)))


def parameters(folder: Path) -> int:
    """Learned numbers: the coefficients, the intercepts and the idf weights."""
    return sum(int(np.load(Path(folder) / f"{a}.npy", mmap_mode="r", allow_pickle=False).size) for a in ARRAYS)
