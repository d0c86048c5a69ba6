"""Image classification through the same loop: tiny random ViT, ConvNeXt, Swin and ResNet models,
and the real digits ViT (trained here at build time), through a real shell and the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from IPython.core.error import UsageError

from hfmagic import benchmark, evaluate, export_onnx, load_model
from tests.support.tiny import IMAGE_ARCHS
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


@pytest.mark.parametrize("arch", sorted(IMAGE_ARCHS))
def test_image_architectures_export_validate_and_quantize(tiny_image, tmp_path, arch):
    model = load_model(tiny_image(arch))
    assert model.task == "image-classification" and model.task_plugin.inputs.sizes(model) == [32]
    variants = export_onnx(model, output=tmp_path, progress=False)
    fused = ["O2", "O2-int8"] if arch == "vit" else []  # ORTOptimizer knows ViT only of these
    assert variants.names == ["torch", "fp32", *fused[:1], "int8", *fused[1:]]
    for v in variants:
        assert v.ok, (v.name, v.error)
    fp32 = variants["fp32"].validation
    assert fp32["cosine"] > 0.9999 and fp32["argmax_agreement"] == 1.0 and fp32["texts"] == 8
    assert fp32["inputs_from"] == "scikit-learn's handwritten digits"
    assert variants["int8"].validation["cosine"] > 0.99
    assert any("validated on 8 images" in n for n in variants.notes)
    from hfmagic.tasks.vision.images import digits

    some = digits()
    scored = evaluate(variants, data=(np.array([np.asarray(im) for im in some.images[:40]]), some.labels[:40]),
                      progress=False)
    assert [r["status"] for r in scored.rows] == ["ok"] * len(variants) and scored.rows[1]["agreement"] == 1.0
    timed = benchmark(variants, variants=["torch", "fp32"], batch_sizes=[2], inline=True, warmup=0, min_runs=2,
                      min_time=0.01, progress=False)
    assert [(r["variant"], r["image_size"], r["status"]) for r in timed.rows] == [("torch", 32, "ok"), ("fp32", 32, "ok")]


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


def test_flips_carry_thumbnails_shown_in_the_notebook(tiny_image):
    from hfmagic.tasks.vision.images import digits

    data = digits()
    variants = export_onnx(load_model(tiny_image("vit")), levels=["fp32"], progress=False)
    result = evaluate(variants, data=(np.array([np.asarray(im) for im in data.images[:200]]), data.labels[:200]),
                      progress=False)
    assert result.data_source == "<arrays 200 images>"
    # int8 of a random tiny ViT flips a few near-tied images; each flip keeps a thumbnail
    if result.flip_rows:
        assert result.flip_rows[0]["thumbnail"].startswith("data:image/png;base64,")
        assert "<img src=\"data:image/png;base64," in result._repr_html_()
    flips = sum(r.get("flips") or 0 for r in result.rows)
    assert flips == len(result.flip_rows)


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


def test_a_folder_without_an_image_processor_is_refused_in_one_line(tiny_image, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_image("vit"), tmp_path / "vit")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(Exception, match="no image processor .*image_processor.save_pretrained"):
        load_model(folder)


def test_the_cli_benchmarks_an_image_model(tiny_image):
    out = subprocess.run([sys.executable, "-m", "hfmagic", "benchmark", str(tiny_image("resnet")), "--variants",
                          "fp32", "--batch-sizes", "1", "--image-sizes", "32", *FAST.split()],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "image px" in out.stdout and "images/s" in out.stdout


@pytest.fixture(scope="session")
def digits_vit():
    return load_model("digits-vit")


def test_the_digits_vit_is_a_real_classifier_and_keeps_its_accuracy(digits_vit):
    assert len(digits_vit.dataset) == 360 and digits_vit.task == "image-classification"
    result = evaluate(export_onnx(digits_vit, levels=["fp32"], progress=False), progress=False)
    rows = {r["variant"]: r for r in result.rows}
    assert rows["torch"]["accuracy"] > 0.95  # 0.975 measured: trained here on the digits' 80%
    assert rows["fp32"]["accuracy"] == rows["torch"]["accuracy"] and rows["int8"]["gate"] == "pass"
    rows_bench = benchmark(digits_vit, variants=["fp32"], batch_sizes=[8], min_time=0.05, min_runs=3, warmup=1,
                           max_time=1, progress=False).rows
    assert rows_bench[0]["image_size"] == 32 and rows_bench[0]["samples_per_s"] > 0


def test_built_in_image_sets_read_their_real_files():
    from hfmagic.tasks.vision.images import FASHION_MNIST, digits, load_images

    assert len(digits()) == 1797 and digits().images[0].size == (8, 8)
    if not FASHION_MNIST.exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (make test installs it)")
    test = load_images("fashion-mnist")
    assert len(test) == 10_000 and test.images[0].size == (28, 28) and test.label_names[9] == "Ankle boot"
    assert test.labels[:5] == [9, 2, 1, 1, 6]  # the t10k file's first labels
