"""demo-small through the shell and the command line: a three-layer model with the demo's held-out split,
its accuracy in torch and int8. Built for real (tests/conftest.py, demo_small_folder)."""

import json
import subprocess
import sys

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
