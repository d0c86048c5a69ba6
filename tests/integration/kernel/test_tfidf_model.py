"""The classical baseline as a model like any other: %load_model tfidf --data D, then %benchmark and
%evaluate it alone and next to a transformer, through a real InteractiveShell."""

import subprocess
import sys

import pandas as pd
import pytest

from tests.support.fast import TFIDF_SWEEP as SWEEP
from tests.support.tiny import LABELS, labelled, sentences


@pytest.fixture(scope="module")
def tf(shell):
    shell.user_ns["tf_data"] = labelled()
    handle = shell.run_line_magic("load_model", "tfidf --data tf_data --name tf -o -q")
    yield handle
    for name in ("tf", "tf_data"):
        shell.user_ns.pop(name, None)


def test_load_trains_on_the_training_split_and_shows_what_it_is(tf):
    card = str(tf)
    assert tf.task == "text-classification" and tf.framework == "sklearn"
    assert tf.labels == dict(enumerate(sorted(LABELS)))
    assert "vocabulary" in card and "trained" in card and "stratified 80% split" in card
    assert len(tf.dataset) == 40  # the 20% it did not see
    from hfmagic.tasks.text.baseline import TfidfBaseline

    again = TfidfBaseline.load(tf.path)
    assert again.sha256 == tf.weights_sha256 and again.info["n_train"] == 160


def test_evaluate_scores_it_with_the_same_figures_as_scikit_learn(shell, tf):
    ev = shell.run_line_magic("evaluate", "tf -o -q")
    row = ev.rows[0]
    assert row["variant"] == "sklearn" and row["model"] == "tf" and row["status"] == "ok"
    from sklearn.metrics import accuracy_score

    from hfmagic.tasks.text.baseline import TfidfBaseline

    model = TfidfBaseline.load(tf.path)
    truth = [model.label_names.index(v) for v in tf.dataset["label"]]
    assert row["accuracy"] == pytest.approx(accuracy_score(truth, model.predict(list(tf.dataset["text"]))))
    assert row["accuracy_low"] <= row["accuracy"] <= row["accuracy_high"]


def test_benchmark_times_it_end_to_end_in_a_worker(shell, tf):
    bench = shell.run_line_magic("benchmark", f"tf {SWEEP} -o -q")
    (row,) = bench.rows
    assert row["backend"] == "sklearn" and row["status"] == "ok" and row["isolation"] == "worker"
    assert len(row["samples_ms"]) >= 3 and row["p50_ms"] > 0 and row["model"] == "tf"


def test_it_joins_a_comparison_with_a_transformer(shell, tf, tiny_bert):
    shell.run_line_magic("load_model", f"{tiny_bert} --name tiny_clf -q")
    ev = shell.run_line_magic("evaluate", "tf tiny_clf --data tf_data --variants torch,fp32 --limit 40 -o -q")
    keys = [(r["model"], r["variant"]) for r in ev.rows]
    assert keys == [("tf", "sklearn"), ("tiny_clf", "torch"), ("tiny_clf", "fp32")]
    assert all(r.get("pct_of_reference") is not None for r in ev.rows)  # against tf/sklearn, the reference
    assert ev.reference == "tf/sklearn" and "model" in ev.flips.columns
    bench = shell.run_line_magic("benchmark", f"tiny_clf tf --variants torch {SWEEP} --inline -o -q")
    assert {(r["model"], r["backend"]) for r in bench.rows} == {("tiny_clf", "torch"), ("tf", "sklearn")}
    assert all(r["speedup"] is not None for r in bench.rows)


def test_what_it_cannot_do_is_one_line(shell, tf, capsys):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="classical sklearn baseline: it has no ONNX export"):
        shell.run_line_magic("export_onnx", "tf")
    with pytest.raises(UsageError, match="the TF-IDF baseline trains on labelled texts: pass --data"):
        shell.run_line_magic("load_model", "tfidf")
    with pytest.raises(UsageError, match="--data is what the tfidf baseline trains on"):
        shell.run_line_magic("load_model", "demo --data tf_data")


def test_data_it_cannot_train_on_and_tasks_without_a_baseline_are_one_line(tmp_path, shell):
    from IPython.core.error import UsageError

    five = tmp_path / "five.csv"  # 'sport' has one example: no stratified held-out split can hold it
    pd.DataFrame({"text": sentences(5, seed=2), "label": ["business"] * 2 + ["politics"] * 2 + ["sport"]}).to_csv(
        five, index=False)
    done = subprocess.run([sys.executable, "-m", "hfmagic", "load", "tfidf", "--data", str(five)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "'sport' (1)" in done.stderr and "at least 2 examples" in done.stderr
    shell.user_ns["tf_small"] = labelled(60, seed=4)
    before = shell.user_ns.get("tfidf")
    for task in ("question-answering", "text-generation"):
        with pytest.raises(UsageError, match=f"{task} has no classical baseline.*text-classification"):
            shell.run_line_magic("load_model", f"tfidf --data tf_small --task {task}")
    assert shell.user_ns.get("tfidf") is before  # nothing bound
