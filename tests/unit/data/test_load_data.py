"""hfmagic.data.tables.load_data: every kind of source, guessed columns, fingerprints, and bad input."""

import hashlib
import json

import pandas as pd
import pytest

from hfmagic.data.tables import LabelledData, hub_reachable, load_data
from hfmagic.core.errors import DataError, OfflineError, UsageProblem

FRAME = pd.DataFrame({"id": [1, 2, 3], "Review": ["good film", "bad plot", "fine"], "target": [1, 0, 1]})


def expected_sha(texts, labels):
    digest = hashlib.sha256()
    for t, y in zip(texts, labels):
        digest.update(json.dumps([t, y]).encode() + b"\n")
    return digest.hexdigest()


def test_every_file_format_reads_the_same_data_and_fingerprint(tmp_path):
    FRAME.to_csv(tmp_path / "d.csv", index=False)
    FRAME.to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    FRAME.to_json(tmp_path / "d.json", orient="records")
    FRAME.to_json(tmp_path / "lines.json", orient="records", lines=True)  # JSON Lines named .json
    FRAME.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    FRAME.to_parquet(tmp_path / "d.parquet")
    ref = load_data(FRAME)
    assert (ref.texts, ref.labels) == (["good film", "bad plot", "fine"], [1, 0, 1])
    assert (ref.text_column, ref.label_column) == ("Review", "target")
    assert ref.fingerprint["sha256"] == expected_sha(ref.texts, ref.labels)
    assert ref.fingerprint["rows"] == 3 and ref.fingerprint["columns"] == ["Review", "target"]
    assert "texts from column 'Review' (guessed)" in ref.notes
    for name in ("d.csv", "d.tsv", "d.json", "lines.json", "d.jsonl", "d.parquet"):
        data = load_data(tmp_path / name)
        assert (data.texts, data.labels, data.fingerprint["sha256"]) == (ref.texts, ref.labels,
                                                                           ref.fingerprint["sha256"]), name
        assert data.source == str(tmp_path / name)
    assert load_data(FRAME, limit=2).fingerprint["sha256"] == expected_sha(ref.texts[:2], ref.labels[:2])


def test_datasets_class_labels_splits_and_saved_folders(tmp_path):
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    ds = datasets.Dataset.from_dict({"sentence": ["a", "b", "c"], "label": [0, 1, 1]}, features=features)
    data = load_data(ds)
    assert (data.texts, data.labels, data.label_names) == (["a", "b", "c"], [0, 1, 1], ["neg", "pos"])
    both = datasets.DatasetDict(train=ds.select([0]), test=ds.select([1, 2]))
    assert load_data(both).texts == ["b", "c"]  # test by default
    assert load_data(both, split="train").texts == ["a"]
    both.save_to_disk(tmp_path / "saved")
    assert load_data(tmp_path / "saved", split="train").texts == ["a"]
    with pytest.raises(DataError, match="has no split 'validation'; its splits are: train, test"):
        load_data(both, split="validation")
    with pytest.raises(UsageProblem, match="--split train applies to hub datasets"):
        load_data(FRAME, split="train")


def test_unlabelled_texts_for_benchmark_inputs():
    data = load_data(["one text", "another"], require_labels=False)
    assert data.labels is None and data.texts == ["one text", "another"] and len(data) == 2
    plain = load_data(pd.DataFrame({"text": ["x"], "label": ["y"]}), require_labels=False)
    assert plain.labels is None and plain.fingerprint["columns"] == ["text"]
    assert isinstance(load_data(plain), LabelledData)


@pytest.mark.parametrize("source, kwargs, error, message", [
    (FRAME.iloc[:0], {}, DataError, "is empty (0 rows)"),
    (FRAME, {"limit": 0}, UsageProblem, "--limit must be a positive number of examples, got 0"),
    (FRAME, {"label_column": "stars"}, DataError, "no column 'stars' in <DataFrame 3 rows>; its columns are: "
                                                  "id, Review, target (pass --label-column)"),
    (pd.DataFrame({"a": ["x"], "b": ["y"]}), {}, DataError, "cannot tell which column of <DataFrame 1 rows> "
                                                           "holds the texts; pass --text-column with one of: a, b"),
    (pd.DataFrame({"text": ["x"], "score": [1]}), {}, DataError, "which column of <DataFrame 1 rows> holds the "
                                                                 "labels; pass --label-column"),
    (pd.DataFrame({"text": ["x"], "sentence": ["y"], "label": [1]}), {}, DataError,
     "holds the texts ('text', 'sentence' all could); pass --text-column"),
    (pd.DataFrame({"text": ["x"], "label": [1], "topic": ["z"]}), {}, DataError,
     "holds the labels ('label', 'topic' all could); pass --label-column"),
    (pd.DataFrame({"text": ["x", None], "label": [1, 0]}), {}, DataError, "row 1 is empty"),
    (pd.DataFrame({"text": ["x", "y"], "label": [1.5, 0]}), {}, DataError, "must hold class labels (names or "
                                                                          "ids), but row 0 has float 1.5"),
    ("missing.csv", {}, DataError, "no file at missing.csv"),
    (42, {}, DataError, "cannot read data from a int"),
    ("demo", {"split": "train"}, UsageProblem, "only its held-out test split"),
    ("someorg/some_dataset", {}, OfflineError, "'someorg/some_dataset' is no variable or file here, and the hub cannot be reached"),
])
def test_bad_input_is_one_clear_error(source, kwargs, error, message):
    with pytest.raises(error) as info:
        load_data(source, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unreadable_file(tmp_path):
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"could not read .*bad.parquet as parquet"):
        load_data(tmp_path / "bad.parquet")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="use a .csv, .tsv, .json, .jsonl or .parquet file"):
        load_data(tmp_path / "notes.txt")


def test_hub_check_answers_quickly_when_no_hub_answers(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    reachable, why = hub_reachable(timeout=2)
    assert not reachable and why.startswith("no answer from http://127.0.0.1:9 within 2 s")
    with pytest.raises(OfflineError, match="no answer from http://127.0.0.1:9"):
        load_data("someorg/some_dataset")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() == (False, "HF_HUB_OFFLINE is set")


@pytest.mark.slow
def test_demo_data_is_the_held_out_split(demo_folder):
    data = load_data("demo", limit=10)
    assert len(data) == 10 and data.source.startswith("demo")
    assert set(load_data("demo").labels) == {"business", "entertainment", "politics", "sports", "tech"}


def test_columns_without_names_are_read_by_their_position(tmp_path):
    """read_csv(header=None) and JSON arrays of arrays name their columns 0, 1, ...: pass them as text."""
    (tmp_path / "bare.csv").write_text("good film,1\nbad plot,0\n")
    (tmp_path / "rows.json").write_text('[["good film", 1], ["bad plot", 0]]')
    frame = pd.read_csv(tmp_path / "bare.csv", header=None)
    for source in (frame, tmp_path / "rows.json"):
        data = load_data(source, text_column="0", label_column="1")
        assert (data.texts, data.labels, data.text_column) == (["good film", "bad plot"], [1, 0], "0")
    assert load_data(frame, text_column=0, label_column=1).texts == ["good film", "bad plot"]
    assert load_data(frame, require_labels=False).text_column == "0"  # the one column of strings
    with pytest.raises(DataError, match="no column '2' in <DataFrame 2 rows>; its columns are: 0, 1"):
        load_data(frame, text_column="2")
