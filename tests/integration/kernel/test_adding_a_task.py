"""Issue 24: a task is one folder. The example of docs/extending.md (examples/tasks/text_pair/, a
text-pair classifier that hfmagic does not register) is registered here and run through
%export_onnx, %benchmark (inline and in a worker process) and %evaluate on real BBC News articles,
through a real InteractiveShell; the docs show exactly its code. A task that writes no inputs of
its own is told so in one line (no default is secretly text's)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from tests.support.fast import SWEEP_NO_WIDGET as FAST
from tests.support.paths import REPO

ROOT = REPO
EXAMPLE = ROOT / "examples" / "tasks" / "text_pair" / "task.py"


@pytest.fixture
def pair_task():
    from examples.tasks.text_pair.task import TextPairClassification
    from hfmagic import tasks

    tasks.register(TextPairClassification)
    try:
        yield TextPairClassification
    finally:
        tasks.unregister(TextPairClassification.NAME)


@pytest.fixture(scope="module")
def bbc_pairs(tmp_path_factory):
    """Pairs of real BBC News articles (the demo's held-out split): "same" when both are of one topic."""
    import pandas as pd

    from hfmagic.data.tables import load_data

    bbc = load_data("bbc")
    n = len(bbc)
    other = [(i * 7 + 1) % n for i in range(48)]
    frame = pd.DataFrame({"text_a": bbc.texts[:48], "text_b": [bbc.texts[j] for j in other],
                          "label": ["same" if bbc.labels[i] == bbc.labels[j] else "different"
                                    for i, j in enumerate(other)]})
    assert 0 < (frame["label"] == "same").sum() < len(frame)
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory):
    """A tiny BERT sentence classifier (different/same), its weights scaled so that its predictions vary."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    from tests.support.tiny import make_tokenizer

    tokenizer = make_tokenizer("bert")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=2,
                        id2label={0: "different", 1: "same"}, label2id={"different": 0, "same": 1})
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    folder = tmp_path_factory.mktemp("cross-encoder")
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_docs_show_the_example_task_as_it_is():
    """docs/extending.md's "Adding a task" holds the example's whole file, line for line."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "extending.md").read_text(), flags=re.S)
    assert EXAMPLE.read_text() in blocks
    assert len(EXAMPLE.read_text().splitlines()) <= 60


def test_a_text_pair_task_in_one_folder_exports_benchmarks_and_evaluates(shell, capsys, pair_task, cross_encoder,
                                                                      bbc_pairs):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    shell.user_ns.update(pair_folder=str(cross_encoder), pairs_csv=str(bbc_pairs))
    shell.run_line_magic("load_model", "$pair_folder --task text-pair-classification --name pairs -q")
    pairs = shell.user_ns["pairs"]
    assert pairs.task == "text-pair-classification" and isinstance(pairs.task_plugin, pair_task)

    # export: static int8 calibrated on real pairs; every variant validated against PyTorch on them
    variants = shell.run_line_magic("export_onnx", "pairs --levels fp32 --quantize static --calibration $pairs_csv "
                                                   "--samples 16 --name pairs_onnx -o -q")
    assert variants.names == ["torch", "fp32", "int8-static"]
    fp32 = variants["fp32"]
    assert fp32.ok and fp32.validation["cosine"] > 0.9999 and fp32.validation["argmax_agreement"] == 1.0
    assert variants["int8-static"].path is not None  # built from the calibration pairs' features
    assert any("the first pairs of" in n for n in variants.notes), variants.notes

    # benchmark on the real pairs, end to end (the tokenizer reads both texts), inline and in a worker
    inline = shell.run_line_magic("benchmark", f"pairs_onnx --variants torch,fp32 --inputs $pairs_csv --inline "
                                               f"--batch-sizes 2 --seq-lens 32 {FAST} -o -q")
    assert [r["status"] for r in inline.rows] == ["ok", "ok"] and all(r["e2e_p50_ms"] > 0 for r in inline.rows)
    assert any(n.startswith("inputs: 48 real pairs from") for n in inline.notes), inline.notes
    worker = shell.run_line_magic("benchmark", f"pairs_onnx --variants fp32 --inputs $pairs_csv --batch-sizes 1 "
                                               f"--seq-lens 16 {FAST} -o -q")
    assert [(r["status"], r["isolation"]) for r in worker.rows] == [("ok", "worker")], worker.rows
    assert worker.rows[0]["e2e_p50_ms"] > 0

    # evaluate: the same accuracy as the classifier on each pair read as a pair, fp32 agreeing
    ev = shell.run_line_magic("evaluate", "pairs_onnx --data $pairs_csv --variants torch,fp32 --no-widget -o -q")
    assert ev.task == "text-pair-classification" and ev.metrics == ["accuracy", "f1_macro"]
    torch_row, fp32_row = ev.rows
    import pandas as pd

    frame = pd.read_csv(bbc_pairs)
    tokenizer = AutoTokenizer.from_pretrained(cross_encoder)
    model = AutoModelForSequenceClassification.from_pretrained(cross_encoder).eval()
    with torch.no_grad():
        enc = tokenizer(list(frame["text_a"]), list(frame["text_b"]), truncation=True, max_length=512, padding=True,
                        return_tensors="pt")
        predicted = model(**enc).logits.argmax(-1).numpy()
    truth = np.array([model.config.label2id[v] for v in frame["label"]])
    assert 0 < len(set(predicted)) and torch_row["accuracy"] == pytest.approx(float((predicted == truth).mean()))
    assert torch_row["accuracy_low"] <= torch_row["accuracy"] <= torch_row["accuracy_high"]
    assert fp32_row["agreement"] == 1.0 and fp32_row["status"] == "ok"
    flips_or_none = ev.flips
    assert list(flips_or_none.columns)[:3] == ["variant", "row", "text"]


def test_a_task_whose_inputs_say_nothing_is_told_so_in_one_line(shell, capsys, tmp_path):
    """A non-text task that writes only its size axis: benchmarking one of its models says which hook
    it lacks, and nothing is made up with a tokenizer (no default of a part is text's)."""
    from hfmagic import tasks
    from hfmagic.core.errors import UnsupportedError
    from hfmagic.core.shapes import IMAGE_AXIS
    from hfmagic.tasks import Inputs, Task
    from tests.support.tiny import make_tiny_image

    class SketchInputs(Inputs):
        AXIS = IMAGE_AXIS

    class Sketches(Task):
        NAME, MODALITY, AUTO_CLASS = "sketch-classification", "image", "AutoModelForImageClassification"
        ARCHITECTURES, FALLBACK, LABELLED = ("ForImageClassification",), True, True
        Inputs = SketchInputs

    class NoAxis(Task):
        NAME, MODALITY, AUTO_CLASS = "no-axis", "image", "AutoModelForImageClassification"

    with pytest.raises(UnsupportedError, match="lacks Inputs.AXIS"):
        tasks.register(NoAxis)
    tasks.register(Sketches)
    try:
        shell.user_ns["sketch_folder"] = str(make_tiny_image(tmp_path / "vit"))
        shell.run_line_magic("load_model", "$sketch_folder --task sketch-classification --name sketch -q")
        bench = shell.run_line_magic("benchmark", f"sketch --variants torch --inline --image-sizes 32 --batch-sizes 1 "
                                                  f"{FAST} -o -q")
        (status,) = [r["status"] for r in bench.rows]
        assert "the sketch-classification task does not say which inputs its models take" in status, status
        assert "Inputs.model_inputs" in status and "tokenizer" not in status and "\n" not in status
        no_size = shell.run_cell("%benchmark sketch --variants torch --inline --batch-sizes 1", store_history=False)
        assert "has no default image size; pass --image-sizes" in str(no_size.error_in_exec)
        said = capsys.readouterr()
        assert "Traceback" not in said.out + said.err
    finally:
        tasks.unregister(Sketches.NAME)
    assert json.dumps(tasks.names())  # the registry is as it was
    assert "sketch-classification" not in tasks.names()


def test_the_docs_backend_measures_in_worker_processes(shell, capsys, tiny_bert, tmp_path, monkeypatch):
    """docs/extending.md's backend, saved as a module of one's own and imported (which registers it):
    %benchmark measures with it in worker processes, which learn it from the job, beside onnxruntime."""
    import os
    import sys

    from hfmagic.backends import BACKENDS

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "extending.md").read_text(), flags=re.S)
    (tmp_path / "my_backends.py").write_text(next(b for b in blocks if "class OnnxRuntimeUnoptimized" in b))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    import my_backends  # noqa: F401

    try:
        shell.user_ns["unopt_folder"] = str(tiny_bert)
        shell.run_line_magic("load_model", "$unopt_folder --name unopt -q")
        bench = shell.run_line_magic("benchmark", f"unopt --variants fp32 --backends onnxruntime,onnxruntime-unoptimized "
                                                  f"--batch-sizes 1 --seq-lens 8 {FAST} -o -q")
        assert sorted((r["backend"], r["status"], r["isolation"]) for r in bench.rows) == [
            ("onnxruntime", "ok", "worker"), ("onnxruntime-unoptimized", "ok", "worker")], bench.rows
    finally:
        BACKENDS.pop("onnxruntime-unoptimized", None)
        sys.modules.pop("my_backends", None)
