"""The image task: architectures exported, validated and quantized, flips with thumbnails, a folder
without an image processor refused, the digits ViT, the built-in image sets."""

from __future__ import annotations


import numpy as np
import pytest

from hfmagic import benchmark, evaluate, export_onnx, load_model
from tests.support.tiny import IMAGE_ARCHS


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


def test_a_folder_without_an_image_processor_is_refused_in_one_line(tiny_image, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_image("vit"), tmp_path / "vit")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(Exception, match="no image processor .*image_processor.save_pretrained"):
        load_model(folder)


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
