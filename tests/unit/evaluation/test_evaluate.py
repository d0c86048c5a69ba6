"""hfmagic.evaluation.evaluate(): metrics, intervals, flips, the reference gate, the run store; against
evaluate's evaluator and scikit-learn."""

import json

import numpy as np
import pytest

from tests.support.tiny import LABELS

METRIC_SCRIPT = '''\
import datasets
import evaluate


class LocalAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="accuracy", citation="", inputs_description="",
            features=datasets.Features({"predictions": datasets.Value("int32"),
                                        "references": datasets.Value("int32")}))

    def _compute(self, predictions, references):
        return {"accuracy": sum(int(p == r) for p, r in zip(predictions, references)) / len(references)}
'''


def torch_logits(folder, texts):
    """Logits straight from transformers, one text at a time (no padding): the independent answer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        return np.stack([model(**tok(t, truncation=True, return_tensors="pt")).logits[0].numpy() for t in texts])


def test_rows_flips_gate_and_run_store(clf):
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    from hfmagic.evaluation.api import evaluate
    from hfmagic.store.db import default_store

    events = []
    frame = clf["frame"]
    result = evaluate(clf["variants"], frame, metrics=["accuracy", "f1_macro", "mcc"], batch_size=16,
                      callback=events.append)
    rows = {r["variant"]: r for r in result.rows}
    assert list(rows) == ["torch", "fp32", "int8"] and all(r["status"] == "ok" for r in rows.values())

    label2id = {n: i for i, n in enumerate(LABELS)}
    y = frame.label.map(label2id).to_numpy()
    ref = torch_logits(clf["base"], frame.text)
    lossy = torch_logits(clf["lossy"], frame.text)
    assert len(set(ref.argmax(1))) == 3  # the fixture's model really discriminates
    for name, logits in (("torch", ref), ("fp32", ref), ("int8", lossy)):
        pred, row = logits.argmax(1), rows[name]
        assert row["accuracy"] == accuracy_score(y, pred)
        assert row["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
        assert row["mcc"] == pytest.approx(matthews_corrcoef(y, pred), abs=1e-12)
        for m in ("accuracy", "f1_macro", "mcc"):
            assert row[f"{m}_low"] <= row[m] <= row[f"{m}_high"] and row[f"{m}_low"] < row[f"{m}_high"]
        assert row["n"] == 150 and row["samples_per_s"] > 0
    assert rows["fp32"]["max_logit_diff"] < 1e-4 and rows["fp32"]["agreement"] == 1.0
    assert rows["fp32"]["gate"] == "pass" and rows["fp32"]["pct_of_reference"] == pytest.approx(100)

    changed = np.flatnonzero(lossy.argmax(1) != ref.argmax(1))
    assert 0 < len(changed) < 150
    lossy_row = rows["int8"]
    assert lossy_row["flips"] == len(changed) and lossy_row["flip_rate"] == pytest.approx(len(changed) / 150)
    assert lossy_row["agreement"] == pytest.approx(1 - len(changed) / 150)
    assert lossy_row["max_logit_diff"] == pytest.approx(np.abs(lossy - ref).max(), abs=1e-4)
    pct = 100 * lossy_row["accuracy"] / rows["torch"]["accuracy"]
    assert lossy_row["pct_of_reference"] == pytest.approx(pct)
    assert lossy_row["gate"] == ("pass" if pct >= 99 else "fail")

    flips = result.flips
    assert sorted(flips.row) == changed.tolist() and set(flips.variant) == {"int8"}
    first = flips.set_index("row").loc[changed[0]]
    probs = np.exp(lossy[changed[0]]) / np.exp(lossy[changed[0]]).sum()
    assert first.text == frame.text[changed[0]] and first.label == frame.label[changed[0]]
    assert first.reference == LABELS[ref[changed[0]].argmax()] and first.prediction == LABELS[lossy[changed[0]].argmax()]
    assert first.confidence == pytest.approx(probs.max(), abs=1e-5)

    text, html = str(result), result._repr_html_()
    for fragment in ("95% CI", "% of torch", "reference", "int8", f"{rows['int8']['accuracy']:.4f}"):
        assert fragment in text and fragment in html
    assert list(result.to_pandas().variant) == ["torch", "fp32", "int8"]

    progress = [e for e in events if e["type"] == "progress"]
    assert [e["done"] for e in progress] == list(range(1, progress[-1]["total"] + 1))
    assert [e["row"]["variant"] for e in events if e["type"] == "row"] == ["torch", "fp32", "int8"]

    run = default_store().get(result.run_id)
    assert run["kind"] == "evaluate" and run["status"] == "ok" and len(run["rows"]) == 3
    assert run["provenance"]["dataset"] == result.fingerprint and result.fingerprint["rows"] == 150
    from hfmagic.core.hashing import file_sha256

    assert run["provenance"]["files"] == {n: file_sha256(clf["variants"][n].path) for n in ("fp32", "int8")}
    assert run["rows"][2]["accuracy"] == lossy_row["accuracy"]
    assert run["summary"] == {"notes": result.notes, "flips": result.flip_rows}  # the flips survive a restart
    assert run["params"]["metric_names"] == ["accuracy", "f1_macro", "mcc"]


def test_accuracy_is_what_the_evaluate_evaluator_gives(clf, tmp_path):
    import datasets
    import evaluate as hf_evaluate
    from transformers import pipeline

    from hfmagic.evaluation.api import evaluate

    script = tmp_path / "local_accuracy.py"
    script.write_text(METRIC_SCRIPT)
    handle, frame = clf["handle"], clf["frame"]
    model = handle.torch_model()
    pipe = pipeline("text-classification", model=model, tokenizer=handle.tokenizer(), truncation=True)
    data = datasets.Dataset.from_dict({"text": list(frame.text), "label": list(frame.label.map(model.config.label2id))})
    theirs = hf_evaluate.evaluator("text-classification").compute(
        model_or_pipeline=pipe, data=data, metric=hf_evaluate.load(str(script)),
        label_mapping=model.config.label2id)["accuracy"]

    ours = evaluate(clf["variants"], data, metrics=["accuracy", str(script)], variants=["torch", "fp32"])
    for row in ours.rows:
        assert row["accuracy"] == theirs  # identical, not approximately
        assert row["local_accuracy"] == theirs
        assert row["local_accuracy_low"] <= theirs <= row["local_accuracy_high"]


def test_a_model_target_builds_only_the_variants_asked_for(clf, tmp_path, monkeypatch):
    from hfmagic.core.config import settings
    from hfmagic.evaluation.api import evaluate
    from hfmagic.models.handle import load_model

    monkeypatch.setattr(settings(), "cache_dir", str(tmp_path / "cache"))
    result = evaluate(load_model(clf["base"]), clf["frame"], variants=["O1"], limit=20)
    assert [r["variant"] for r in result.rows] == ["torch", "O1"] and result.rows[1]["status"] == "ok"
    metas = (tmp_path / "cache" / "onnx").glob("*/hfmagic-variant.json")
    built = sorted(json.loads(m.read_text())["name"] for m in metas)
    assert built == ["O1", "fp32"]  # not export_onnx's whole default set (O2, int8, O2-int8)
    from hfmagic.core.errors import UsageProblem

    with pytest.raises(UsageProblem, match="int8-static needs calibration texts and clf has none of its own"):
        evaluate(load_model(clf["base"]), clf["frame"], variants=["int8-static"])


def test_the_gate_is_99_percent_of_the_reference(clf):
    from hfmagic.evaluation.loop import gate
    from hfmagic.data.metrics import resolve
    from hfmagic.tasks import get_task
    from hfmagic.tasks.base import EvalData

    n = 1000
    y = np.zeros(n, dtype=int)
    ref = np.tile([[2.0, 0.0, 0.0]], (n, 1))
    ref[:100] = [0.0, 2.0, 0.0]  # the reference: accuracy 0.9
    texts = type("Data", (), {"texts": [f"t{i}" for i in range(n)]})()
    evaluator = get_task("text-classification").evaluator()
    data = EvalData({"data": texts, "y_true": y}, n, "x", {})
    metrics = resolve(["accuracy"])
    reference = evaluator.finish(None, data, list(ref))
    ref_row = evaluator.score(data, reference, metrics)
    gate(ref_row, "accuracy", ref_row["accuracy"], True)
    assert ref_row["pct_of_reference"] == 100.0 and "gate" not in ref_row
    labels = dict(enumerate(LABELS))
    for wrong, verdict in ((109, "pass"), (110, "fail")):  # 0.891 is exactly 99% of 0.9 (in float: 98.99999...)
        out = np.tile([[2.0, 0.0, 0.0]], (n, 1))
        out[:wrong] = [0.0, 2.0, 0.0]
        prediction = evaluator.finish(None, data, list(out))
        row = evaluator.score(data, prediction, metrics)
        figures, flips = evaluator.compare(data, reference, prediction, f"v{wrong}", labels)
        row.update(figures)
        gate(row, "accuracy", ref_row["accuracy"], False)
        assert row["pct_of_reference"] == pytest.approx(100 * (n - wrong) / 900) and row["gate"] == verdict
        assert row["flips"] == wrong - 100 and row["max_logit_diff"] == 2.0
        if wrong == 109:
            assert [(f["row"], f["reference"], f["prediction"]) for f in flips] == \
                [(i, "business", "politics") for i in range(100, 109)]


def test_feature_extraction_model_is_compared_by_cosine(tiny_factory, tmp_path, clf):
    from hfmagic.evaluation.api import evaluate
    from hfmagic.models.handle import load_model
    from hfmagic.models.variants import Variant, Variants

    from hfmagic.export.api import export_onnx

    handle = load_model(tiny_factory("distilbert", "feature-extraction"))
    result = evaluate(export_onnx(handle, levels=["fp32"], quantize="none"), clf["frame"].iloc[:40], limit=30)
    ref, onnx = result.rows
    assert ref["cosine"] == pytest.approx(1.0) and onnx["cosine"] > 0.9999
    assert onnx["cosine_low"] <= onnx["cosine"] <= onnx["cosine_high"] <= 1.0 + 1e-9
    assert onnx["gate"] == "pass" and "agreement" not in onnx and result.flips.empty
    with pytest.raises(Exception, match="use --metrics cosine"):
        evaluate(Variants(handle, [Variant("torch", handle)]), clf["frame"], metrics=["accuracy"])


def test_ctrl_c_keeps_finished_variants_and_says_how_much(clf):
    from hfmagic.evaluation.api import evaluate
    from hfmagic.store.db import default_store

    def interrupt(event):
        if event["type"] == "progress" and event["label"].startswith("fp32"):
            raise KeyboardInterrupt

    result = evaluate(clf["variants"], clf["frame"], callback=interrupt)
    assert [r["variant"] for r in result.rows] == ["torch"]
    assert "interrupted after 1 of 3 variants; fp32, int8 not evaluated" in result.notes
    run = default_store().get(result.run_id)
    assert run["status"] == "interrupted" and len(run["rows"]) == 1


def test_calls_sharing_reuse_run_the_reference_once_per_batch_size(clf, monkeypatch):
    """optimize() evaluates its candidates in several calls: the reference's outputs are kept in
    the dict they share and read back (said in a note), and every figure is what a call without it gives."""
    from hfmagic.evaluation import loop
    from hfmagic.evaluation.api import evaluate

    ran, real = [], loop._outputs
    monkeypatch.setattr(loop, "_outputs", lambda variant, *a, **k: ran.append(variant.name) or real(variant, *a, **k))
    reuse: dict = {}
    first = evaluate(clf["variants"], clf["frame"], variants=["fp32"], batch_size=16, reuse=reuse)
    second = evaluate(clf["variants"], clf["frame"], variants=["int8"], batch_size=16, reuse=reuse)
    other_size = evaluate(clf["variants"], clf["frame"], variants=["int8"], batch_size=8, reuse=reuse)
    alone = evaluate(clf["variants"], clf["frame"], variants=["int8"], batch_size=16)
    assert ran == ["torch", "fp32", "int8", "torch", "int8", "torch", "int8"]
    said = "outputs were read back from an earlier evaluation"
    assert [any(said in n for n in r.notes) for r in (first, second, other_size, alone)] == [False, True, False, False]
    timing = {"seconds", "samples_per_s", "load_s"}
    figures = [{k: v for k, v in r.rows[1].items() if k not in timing} for r in (second, alone)]
    assert figures[0] == figures[1] and figures[0]["variant"] == "int8"
    assert second.rows[0]["accuracy"] == first.rows[0]["accuracy"]


def test_a_failed_variant_stays_with_its_reason(clf, tmp_path):
    from hfmagic.evaluation.api import evaluate
    from hfmagic.models.variants import Variant, Variants

    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx file")
    handle = clf["handle"]
    vset = Variants(handle, [Variant("torch", handle), Variant("O2", handle, path=broken),
                             Variant("O3", handle, error="optimization failed: no such op")])
    rows = evaluate(vset, clf["frame"], limit=20).rows
    assert [r["variant"] for r in rows] == ["torch", "O2", "O3"]
    assert rows[1]["status"].startswith("failed: ") and "accuracy" not in rows[1]
    assert rows[2]["status"] == "optimization failed: no such op"


def test_label_mapping(clf):
    from hfmagic.data.tables import LabelledData
    from hfmagic.core.errors import DataError
    from hfmagic.data.labels import label_ids

    id2label = {0: "business", 1: "politics", 2: "sport"}

    def data(labels, names=None):
        return LabelledData(["t"] * len(labels), labels, "x", {}, label_names=names)

    assert label_ids(data(["Sport", "business"]), id2label) == [2, 0]  # case is forgiven
    assert label_ids(data([2, 0]), id2label) == [2, 0]
    assert label_ids(data([0, 1], names=["sport", "business"]), id2label) == [2, 0]  # ClassLabel names
    assert label_ids(data([1, 0], names=["neg", "pos"]), {0: "LABEL_0", 1: "LABEL_1"}) == [1, 0]
    with pytest.raises(DataError, match=r"labels the model does not know: 3\. The data's labels: 0, 3"):
        label_ids(data([0, 3]), id2label)
    with pytest.raises(DataError, match="'neg', 'pos'.*0:business"):
        label_ids(data([0, 1], names=["neg", "pos"]), id2label)


def test_bootstrap_matches_scikit_learn_on_the_same_resamples():
    from sklearn.metrics import f1_score, matthews_corrcoef, precision_score

    from hfmagic.data import metrics as M

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 60)
    p = np.where(rng.random(60) < 0.6, y, rng.integers(0, 3, 60))  # class 3 is never predicted
    for name in M.LABEL_METRICS:
        stacked = M.from_confusion(name, M.confusion_stack(y[None], p[None], 4))[0]
        assert stacked == pytest.approx(M.sklearn_metric(name, y, p), abs=1e-12)
    idx = next(M.resample_indices(60))[:25]
    for name, sk in (("f1_weighted", lambda a, b: f1_score(a, b, average="weighted", zero_division=0)),
                     ("precision_macro", lambda a, b: precision_score(a, b, average="macro", zero_division=0)),
                     ("mcc", matthews_corrcoef)):
        ours = M.from_confusion(name, M.confusion_stack(y[idx], p[idx], 4))
        assert ours == pytest.approx([sk(y[i], p[i]) for i in idx], abs=1e-12)
    metric = M.Metric("f1_macro", "label")
    low, high = M.bootstrap(metric, y, p, 4)
    assert (low, high) == M.bootstrap(metric, y, p, 4)  # fixed seed: the same interval every time
    assert low < M.sklearn_metric("f1_macro", y, p) < high
    # the percentile interval itself: scikit-learn on each of the 1,000 resamples, then the 2.5/97.5 percentiles
    every = np.concatenate(list(M.resample_indices(60)))
    assert len(every) == M.RESAMPLES
    scores = [f1_score(y[i], p[i], average="macro", zero_division=0) for i in every]
    assert (low, high) == pytest.approx(tuple(np.percentile(scores, [2.5, 97.5])), abs=1e-12)
