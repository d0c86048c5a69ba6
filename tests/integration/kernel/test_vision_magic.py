"""Image classification through a real shell: an image folder with figures equal to scikit-learn's, bad
image input in one line."""

from __future__ import annotations


import numpy as np
import pytest
from IPython.core.error import UsageError

from hfmagic import load_model
from tests.support.fast import AUDIO_IMAGE_TIMING as FAST


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory):
    """60 of scikit-learn's digits written as PNG files in class folders (label/xxx.png)."""
    from hfmagic.tasks.vision.images import digits

    root = tmp_path_factory.mktemp("digit-pngs")
    data = digits()
    for i in range(60):
        (root / str(data.labels[i])).mkdir(exist_ok=True)
        data.images[i].save(root / str(data.labels[i]) / f"{i:04d}.png")
    return root


def test_shell_loop_on_an_image_folder_with_figures_equal_to_scikit_learns(shell, tiny_image, digit_folder):
    from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

    shell.user_ns["cn"] = load_model(tiny_image("convnext"), name="cn")
    variants = shell.run_line_magic("export_onnx", "cn --name cnv -o -q")
    assert variants.names == ["torch", "fp32", "int8"]  # no O-levels: ORTOptimizer does not know ConvNeXt
    assert any("MatMul weights only" in n for n in variants.notes)

    bench = shell.run_line_magic("benchmark", f"cnv --variants torch,fp32 --batch-sizes 2 --image-sizes 32,48 {FAST} "
                                              f"--inputs {digit_folder} --no-widget -o -q")
    assert [(r["variant"], r["image_size"]) for r in bench.rows] == [
        ("torch", 32), ("torch", 48), ("fp32", 32), ("fp32", 48)]
    assert all(r["status"] == "ok" and r["seq_len"] is None and r["tokens_per_s"] is None for r in bench.rows)
    headings = [c.heading() for c in bench.table().columns]
    assert "image px" in headings and "images/s" in headings and "tokens/s" not in headings
    assert bench.params["image_sizes"] == [32, 48]
    assert all(r["e2e_p50_ms"] > r["p50_ms"] for r in bench.rows)  # real digits, the image processor included
    assert any(n.startswith(f"inputs: 60 real images from {digit_folder}") for n in bench.notes)

    result = shell.run_line_magic("evaluate", f"cnv --data {digit_folder} --no-widget -o -q")
    torch_row = result.rows[0]
    assert result.data_source == str(digit_folder) and torch_row["n"] == 60
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    files = sorted(digit_folder.rglob("*.png"))  # the figures again, without hfmagic: transformers and scikit-learn
    pixels = AutoImageProcessor.from_pretrained(tiny_image("convnext"))(
        images=[Image.open(f).convert("RGB") for f in files], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        logits = AutoModelForImageClassification.from_pretrained(tiny_image("convnext"))(pixel_values=pixels).logits.numpy()
    y_true = np.array([int(p.parent.name) for p in files])
    pred = logits.argmax(1)
    assert (result.predictions["torch"] == pred).all()
    assert torch_row["accuracy"] == pytest.approx(accuracy_score(y_true, pred))
    assert torch_row["f1_macro"] == pytest.approx(f1_score(y_true, pred, average="macro", zero_division=0))
    assert torch_row["top5"] == pytest.approx(top_k_accuracy_score(y_true, logits, k=5, labels=range(10)))
    assert torch_row["top5_low"] <= torch_row["top5"] <= torch_row["top5_high"]
    assert [r["variant"] for r in result.rows] == ["torch", "fp32", "int8"]
    assert result.rows[1]["agreement"] == 1.0 and result.rows[1]["max_logit_diff"] < 1e-4

    from hfmagic.store.db import default_store

    stored = default_store().get(bench.run_id)
    assert stored["params"]["image_sizes"] == [32, 48] and stored["rows"][1]["image_size"] == 48
    runs = str(shell.run_line_magic("hfmagic", "runs --limit 3"))
    assert "b2 32px" in runs or "b2 48px" in runs


def test_bad_image_input_is_one_line_and_leaves_the_namespace(shell, tiny_image, tmp_path):
    shell.user_ns["vt"] = load_model(tiny_image("vit"), name="vt")
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    (empty / "cat" / "notes.txt").write_text("no images here")
    broken = tmp_path / "broken"
    (broken / "cat").mkdir(parents=True)
    (broken / "cat" / "x.png").write_bytes(b"not a png")
    before = set(shell.user_ns)
    cases = {
        f"evaluate vt --data {empty} -q": "holds no images",
        f"evaluate vt --data {broken} -q": "is not an image that can be read",
        "benchmark vt --seq-lens 8 -q": "--seq-lens is not an axis of vt (image-classification)",
        "benchmark vt --image-sizes 64 -q": "position embeddings for 32 px images only",
        "evaluate vt --data digits --metrics top7 -q": "unknown metric 'top7'",
    }
    for line, expected in cases.items():
        with pytest.raises(UsageError) as err:
            shell.run_line_magic(*line.split(" ", 1))
        assert expected in str(err.value) and "\n" not in str(err.value), line
    with pytest.raises(UsageError, match="ORTOptimizer cannot optimize a resnet model"):
        shell.run_line_magic("export_onnx", f"{tiny_image('resnet')} --levels O2 -q")
    assert set(shell.user_ns) == before
