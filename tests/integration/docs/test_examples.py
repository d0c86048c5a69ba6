"""The example notebooks, executed top to bottom in a real Jupyter kernel (nbclient)."""

import re
from pathlib import Path

import nbformat
import pytest

from hfmagic.store.db import RunStore
from tests.support.paths import REPO

EXAMPLES = REPO / "examples"


def execute(name: str, folder: Path) -> nbformat.NotebookNode:
    """Run a notebook in ``folder`` (the kernel inherits conftest's environment: HF_HOME, IPYTHONDIR,
    the Jupyter folders and the hfmagic cache all point at temporary folders). Raises on any error."""
    from nbclient import NotebookClient

    nb = nbformat.read(EXAMPLES / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def outputs(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts += [str(v) for v in out.get("data", {}).values()]
    return "\n".join(parts)


def check_report(folder: Path, name: str, text: str) -> None:
    report = folder / name
    assert report.exists() and f"written to {report.name}" in text
    page = report.read_text()
    assert "hfmagic-state" in page and "rebuild each variant with optimum-cli" in page and "optimum-cli" in page


@pytest.mark.slow  # fine-tunes a model in the notebook
def test_bring_your_own_model(tmp_path):
    nb = execute("bring-your-own-model.ipynb", tmp_path)
    text = outputs(nb)
    assert (tmp_path / "my-model" / "config.json").exists() and (tmp_path / "reviews-test.csv").exists()
    accuracy = float(re.search(r"PyTorch accuracy on the held-out CSV: ([\d.]+)", text).group(1))
    assert accuracy > 0.6  # three balanced topics: chance is 0.33, the short fine-tune learns them
    new = [r for r in RunStore().runs(limit=None) if r["provenance"]["model"]["path"] == str(tmp_path / "my-model")]
    kinds = sorted(r["kind"] for r in new)
    # two evaluations, a rerun, and the two without and with the dashboard
    assert kinds.count("evaluate") == 4 and "benchmark" in kinds and all(r["status"] == "ok" for r in new)
    rerun = next(r for r in new if (r["provenance"] or {}).get("rerun_of"))
    assert RunStore().get(rerun["provenance"]["rerun_of"])["kind"] == "evaluate"
    check_report(tmp_path, "my-model-report.html", text)
    # HFMagic.widget: off, the evaluation shows as a table; on again, as the dashboard (a widget view;
    # the progress bar is a widget too, so the result's own output is told by its text)
    def result(cell):
        shown = [o["data"] for o in cell.outputs if o.get("data", {}).get("text/plain", "").startswith("evaluation of")]
        assert len(shown) == 1, cell.outputs
        return set(shown[0])
    off, on = (result(cell) for cell in nb.cells[-2:])
    assert "application/vnd.jupyter.widget-view+json" not in off and "text/html" in off, off
    assert "application/vnd.jupyter.widget-view+json" in on, on


@pytest.mark.slow
def test_quickstart(tmp_path, demo_folder):
    nb = execute("quickstart.ipynb", tmp_path)
    text = outputs(nb)
    assert "BertForSequenceClassification" in text and "int8" in text
    assert re.search(r"provenance\s+rerun_of", text)  # the evaluation was rerun from its record and compared
    check_report(tmp_path, "quickstart-report.html", text)


@pytest.mark.slow
def test_compare_models(tmp_path, demo_folder, demo_small_folder):
    nb = execute("compare-models.ipynb", tmp_path)
    text = outputs(nb)
    check_report(tmp_path, "compare-models-report.html", text)
    runs = {}
    for r in RunStore().runs(limit=6):  # newest first: this notebook's benchmark and evaluation
        runs.setdefault(r["kind"], r)
    for kind, variants in (("benchmark", 7), ("evaluate", 7)):  # torch, fp32, int8 of two models + tfidf
        run = RunStore().get(runs[kind]["id"])
        assert run["status"] == "ok" and [m["name"] for m in run["provenance"]["models"]] == ["demo", "demo_small", "tfidf"]
        rows = run["rows"]
        assert len(rows) == variants and all(r["status"] == "ok" and r["model_sha"] for r in rows)
        assert {(r["model"], r["variant"]) for r in rows} >= {("demo", "int8"), ("demo_small", "int8"), ("tfidf", "sklearn")}
    page = (tmp_path / "compare-models-report.html").read_text()
    assert "demo_small" in page and "tfidf" in page


@pytest.mark.slow
def test_hfmagic_demo_prints_the_summary_of_both_models_and_the_report_path(tmp_path, demo_folder, demo_small_folder):
    import os
    import subprocess
    import sys

    out = tmp_path / "demo.html"
    done = subprocess.run([sys.executable, "-m", "hfmagic", "demo", "--min-time", "0.1", "--limit", "20",
                           "--html", str(out)], capture_output=True, text=True, env=os.environ, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.split("summary per model and variant")[-1]
    lines = [line.split() for line in summary.splitlines()]
    rows = [(cells[0], cells[1]) for cells in lines if cells and cells[0] in ("demo", "demo_small")]
    assert rows == [(m, v) for m in ("demo", "demo_small") for v in ("torch", "fp32", "int8")], summary
    assert all("ok" in cells for cells in lines if cells and cells[0] in ("demo", "demo_small")), summary
    assert [(c[0], c[1]) for c in lines if c and c[0] == "tfidf"] == [("tfidf", "sklearn")], summary
    # two exports, one benchmark and one evaluation of both models, in one report
    assert done.stdout.rstrip().endswith(f"report of 4 runs written to {out}") and out.exists()
    page = out.read_text()
    assert "demo_small" in page


@pytest.mark.slow
def test_llm(tmp_path):
    """The real SmolLM2 (its GGUF dequantised once), its variants (llama.cpp's too), TTFT/TPOT and perplexity."""
    nb = execute("llm.ipynb", tmp_path)
    text = outputs(nb)
    assert "LlamaForCausalLM" in text and "134.52 M" in text and "9 (3 KV heads, grouped-query)" in text
    assert "49,152 tokens" in text
    import time

    from hfmagic.models.handle import load_model

    start = time.monotonic()
    again = load_model("smollm2")  # dequantised once, by the notebook's kernel, into the shared cache
    assert str(again.path) in text and time.monotonic() - start < 20
    for variant in ("fp32", "int4", "genai-fp32", "genai-int4", "gguf-f32", "gguf-q4_k_m", "gguf-q4_1"):
        assert re.search(rf"^{variant}\s.*\sok$", text, re.M), variant  # exported and validated
    assert "perplexity" in text
    assert re.search(r"fastest inside the perplexity gate: \S+ on \S+, TTFT \d+ ms, TPOT [\d.]+ ms", text)
    runs = [r for r in RunStore().runs(limit=None) if r["provenance"]["model"]["source"] == "smollm2"]
    assert {"export", "benchmark", "evaluate"} <= {r["kind"] for r in runs}


def test_llm_tiny(tmp_path):
    """The decoder loop on a tiny random Llama built in the notebook (the quick tier's LLM notebook):
    every variant built and validated, TTFT and TPOT rows on each runtime, perplexity rows."""
    nb = execute("llm-tiny.ipynb", tmp_path)
    text = outputs(nb)
    for variant in ("fp32", "int4", "genai-fp32", "genai-int4", "gguf-f32", "gguf-q4_k_m"):
        assert re.search(rf"^{variant}\s.*\sok$", text, re.M), variant  # exported and validated
    for backend in ("torch", "onnxruntime", "onnxruntime-genai", "llama.cpp"):
        assert re.search(rf"^tiny\s+\S+\s+{re.escape(backend)}\s+1\s+32\s.*\sok$", text, re.M), backend  # the dashboard's
    assert "evaluation: perplexity over 256 tokens" in text


@pytest.mark.slow
def test_a_gguf_file_of_a_hub_repository_loads_from_the_hub_cache(tmp_path):
    """`hfmagic load ORG/NAME --gguf-file FILE` takes that one file of the repository, here from the
    hub's cache (offline: a snapshot laid out as huggingface_hub keeps it, holding SmolLM2's GGUF);
    the file dequantised once (the notebook above did it: the same file, the same cache folder)."""
    import os
    import subprocess
    import sys

    from hfmagic.tasks.generation.gguf import smollm2

    gguf = smollm2()
    repo = Path(os.environ["HF_HOME"]) / "hub" / "models--hfmagic-test--smollm2-gguf"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    link = repo / "snapshots" / commit / gguf.name
    if not link.exists():
        link.symlink_to(gguf)

    def load(*args):
        return subprocess.run([sys.executable, "-m", "hfmagic", "load", *args], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    done = load("hfmagic-test/smollm2-gguf", "--gguf-file", gguf.name)
    assert done.returncode == 0, done.stderr
    assert "LlamaForCausalLM" in done.stdout and "hfmagic-test/smollm2-gguf" in done.stdout
    for args, words in ((("hfmagic-test/smollm2-gguf", "--gguf-file", "other.Q8_0.gguf"), "not in the hub cache"),
                        ((str(tmp_path), "--gguf-file", gguf.name), "--gguf-file names one .gguf file")):
        bad = load(*args)
        assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and words in bad.stderr, bad.stderr


@pytest.mark.slow
def test_vision(tmp_path):
    """The digits ViT (trained once into the shared cache), its variants, images/s and accuracy."""
    nb = execute("vision.ipynb", tmp_path)
    text = outputs(nb)
    assert "ViTForImageClassification" in text and "image-classification" in text
    for variant in ("fp32", "O2", "int8", "O2-int8"):
        assert re.search(rf"^{variant}\s.*\sok$", text, re.M), variant  # exported and validated
    assert "images/s" in text and "image px" in text and "top5" in text
    assert re.search(r"fastest inside the accuracy gate at batch 8: \S+ on \S+, \d+ images/s, [\d.]+x torch", text)
    runs = [r for r in RunStore().runs(limit=None) if r["provenance"]["model"]["source"] == "digits-vit"]
    assert {"export", "benchmark", "evaluate"} <= {r["kind"] for r in runs}


@pytest.mark.slow
def test_cluster(tmp_path, demo_small_folder):
    """A sweep with --on each on a two-node Ray cluster on 127.0.0.1, and a sharded evaluation."""
    nb = execute("cluster.ipynb", tmp_path)
    text = outputs(nb)
    sweep = next(r for r in RunStore().runs(limit=4) if r["kind"] == "benchmark")
    rows = RunStore().get(sweep["id"])["rows"]
    assert {r["node"] for r in rows} == {"kind_a", "kind_b"} and all(r["status"] == "ok" for r in rows)
    assert "kind_a" in text and "kind_b" in text and "shards" in text


@pytest.mark.slow
def test_serve(tmp_path, demo_small_folder):
    """Two variants served on Ray Serve (127.0.0.1), called over HTTP, load-tested side by side."""
    nb = execute("serve.ipynb", tmp_path)
    text = outputs(nb)
    assert "served int8 at http://127.0.0.1:" in text and "'predictions'" in text and "'server_ms'" in text
    assert "load test" in text and "highest rate inside the SLO (300 ms p99)" in text
    assert "stopped: fp32, int8" in text
