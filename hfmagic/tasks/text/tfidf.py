"""The TF-IDF baseline as a model hfmagic loads, measures and scores (``%load_model tfidf --data D``).

What the text-classification task brings for it (:mod:`hfmagic.tasks.text.task`):

- a model kind (:class:`TfidfKind`): a folder of the baseline's files (no transformers weights),
  one way to run (its one variant, ``sklearn``), no ONNX export, texts read end to end;
- its runtime, a backend of its own (:class:`Sklearn`: scikit-learn on the texts, no tokenizer in
  front of it, the vectorizer part of what is timed);
- the ``tfidf`` source: the baseline trained on ``--data``'s training split (:func:`build`).

The classifier itself (TF-IDF and logistic regression, saved without pickle) is
:mod:`hfmagic.tasks.text.baseline`; it is imported only when one is built or run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from hfmagic.core.backend import Backend
from hfmagic.core.config import settings
from hfmagic.core.errors import DataError, UsageProblem
from hfmagic.data.tables import load_data
from hfmagic.tasks.base import require_any
from hfmagic.tasks.kinds import ModelKind, ModelSource
from hfmagic.tasks.registry import get_task, names
from hfmagic.tasks.text import demo
from hfmagic.tasks.text.baseline import (FORMAT, META, REGRESSION, VECTORIZER, TfidfBaseline, files, folder_sha256,
                                         parameters)

NAME = "tfidf"  # the %load_model source that trains one
CONFIG_KIND = "tfidf-logreg"  # config.json's "hfmagic_baseline": what loads the folder
ARCHITECTURE = "TfidfLogisticRegression"
TEST_FILE = "test.jsonl"
HOLDOUT, SEED = 0.2, 0


class TfidfKind(ModelKind):
    """A saved TF-IDF baseline: its files are its weights, scikit-learn runs it on the texts themselves."""

    NAME = "sklearn"
    WHAT = "a classical sklearn baseline"
    RUNTIME = "sklearn"
    FILE = "(scikit-learn)"
    READS_EXAMPLES = True
    NOTE = ("a classical baseline, timed end to end per text (TF-IDF included) on real texts cut to seq words; the "
            "transformers' rows time the model alone, so compare with their e2e_p50_ms (--inputs DATA) before "
            "reading a speed-up")

    @classmethod
    def claims(cls, config: dict) -> bool:
        return config.get("hfmagic_baseline") == CONFIG_KIND

    def weight_files(self, path: Path) -> tuple[Path, ...]:
        return files(path)

    def sha256(self, path: Path, files: tuple[Path, ...]) -> str:
        return folder_sha256(path)  # the baseline's own identity, the same one it saves and loads with

    def parameters(self, model) -> int:
        return parameters(model.path)

    def check(self, model) -> None:
        require_any(model.path, (META,), f"TF-IDF baseline file ({META})", "train it again: %load_model tfidf --data D")

    def card_lines(self, model) -> list[tuple[str, str]]:
        c = model.config
        return [("vocabulary", f"{c.get('vocab_size', 0):,} terms"),
                ("trained", f"in {c.get('train_s', float('nan')):.2f} s on {c.get('n_train')} texts of "
                            f"{c.get('trained_on')}")]

    def inputs(self, model, examples, batch: int, size: int) -> dict:
        """The texts themselves, cut to ``size`` words."""
        if not examples:
            raise UsageProblem(f"{model.name} reads real texts; pass --inputs DATA")
        return {"texts": [" ".join(examples[i % len(examples)].split()[:size]) for i in range(batch)]}

    def own_examples(self, model, limit: int) -> list | None:
        if model.dataset is None:
            return None
        return [str(t) for t in list(model.dataset["text"])[:limit]]


class Sklearn(Backend):
    """``TfidfBaseline.logits(texts)`` with numpy's BLAS held to the thread setting (threadpoolctl)."""

    NAME = "sklearn"
    THREADS = "scikit-learn's BLAS threads (threadpoolctl)"
    RUNS = "sklearn"
    DEFAULT = True

    @classmethod
    def imports(cls) -> None:
        import sklearn.linear_model  # noqa: F401

    def load(self, variant, threads: int) -> None:
        from threadpoolctl import threadpool_limits

        self.model = TfidfBaseline.load(variant.model.path)
        self._limits = threadpool_limits(limits=threads)
        self._threads = threads
        self.input_names = ["texts"]
        self.output_names = ["logits"]

    def run(self, inputs):
        return [self.model.logits(inputs["texts"])]

    def threads_used(self) -> dict[str, int]:
        return {"sklearn BLAS threads (threadpoolctl)": self._threads}

    def close(self) -> None:
        if hasattr(self, "_limits"):
            self._limits.restore_original_limits()


def load(options: dict):
    """``%load_model tfidf --data D``: (the baseline's folder, its held-out split), for a task whose
    classical baseline it is (text classification)."""
    import pandas as pd

    task = options.get("task")
    if task is not None and get_task(task).CLASSICAL_BASELINE != NAME:
        having = [n for n in names() if get_task(n).CLASSICAL_BASELINE == NAME]
        why = get_task(task).CLASSICAL_BASELINE
        raise UsageProblem(f"{task} has no classical baseline{f' ({why})' if why else ''}; the tfidf baseline "
                           f"is for {', '.join(having)} (leave --task out)")
    path = build(options.get("data"), options.get("text_column"), options.get("label_column"))[0]
    return path, pd.read_json(path / TEST_FILE, lines=True)


SOURCE = ModelSource(NAME, load, trains=True)


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
