"""%benchmark through a real shell: figures from raw samples, inline mode, real inputs, bad input in
one line, quiet, torch.compile, on tiny models."""

import os

import numpy as np

import pytest
from IPython.core.error import UsageError

from hfmagic.core.stats import speedup
from tests.support.fast import BENCHMARK_TIMING as FAST
from tests.support.store import runs_in_store


@pytest.fixture
def shell_with_variants(shell, tiny_variants):
    shell.user_ns["tv"] = tiny_variants
    return shell


def test_worker_sweep_figures_are_those_of_the_raw_samples(shell_with_variants, tiny_variants):
    res = shell_with_variants.run_line_magic(
        "benchmark", f"tv --variants fp32,torch --batch-sizes 2,1 --seq-lens 16,8 {FAST} --order sequential -o -q")
    rows = res.rows
    # baseline (torch) first, shapes smallest first, every combination present
    assert [(r["variant"], r["backend"], r["batch_size"], r["seq_len"]) for r in rows] == [
        (v, b, bs, s) for v, b in [("torch", "torch"), ("fp32", "onnxruntime")]
        for bs, s in [(1, 8), (1, 16), (2, 8), (2, 16)]]
    for r in rows:
        x = np.asarray(r["samples_ms"])
        assert r["status"] == "ok" and r["runs"] == len(x) >= 5 and x.sum() >= 0.9 * 50
        assert r["p50_ms"] == pytest.approx(np.median(x))
        for q in (90, 95, 99):
            assert r[f"p{q}_ms"] == pytest.approx(np.percentile(x, q))
        assert r["mean_ms"] == pytest.approx(x.mean()) and r["std_ms"] == pytest.approx(x.std(ddof=1))
        assert r["samples_per_s"] == pytest.approx(r["batch_size"] * len(x) / x.sum() * 1000)
        assert r["tokens_per_s"] == pytest.approx(r["samples_per_s"] * r["seq_len"])
        assert r["peak_mem_mb"] > 20 and r["load_s"] > 0 and r["startup_s"] > 0 and r["first_ms"] > 0
        assert r["isolation"] == "worker" and r["pid"] != os.getpid() and r["threads"] == 1
        base = rows[[(b["batch_size"], b["seq_len"]) for b in rows].index((r["batch_size"], r["seq_len"]))]
        expected = np.median(base["samples_ms"]) / np.median(x)
        assert r["speedup"] == pytest.approx(expected)
        # the interval is the seeded bootstrap of these very samples (with 5-sample medians a
        # percentile interval need not contain its own point estimate, so that is not asserted)
        interval = (1.0, 1.0) if r is base else speedup(base["samples_ms"], x)[1:]  # the baseline is itself
        assert (r["speedup_low"], r["speedup_high"]) == pytest.approx(interval)
        assert r["speedup_low"] <= r["speedup_high"]
    assert {r["speedup"] for r in rows[:4]} == {1.0}
    # one worker per variant x backend, loaded once for all its shapes
    assert len({r["pid"] for r in rows[:4]}) == 1 and len({r["pid"] for r in rows[4:]}) == 1
    assert rows[0]["pid"] != rows[4]["pid"]
    assert rows[4]["size_mb"] == pytest.approx(tiny_variants["fp32"].path.stat().st_size / 1e6)
    text, html = str(res), res._repr_html_()
    for fragment in ("p50 ms", "p99 ms", "tokens/s", "peak MB", "speed-up [95% CI]", "1.00x [1.00, 1.00]"):
        assert fragment in text and fragment in html
    assert any("peak resident memory" in n for n in res.notes)
    frame = res.to_pandas()
    assert len(frame) == 8 and frame["p50_ms"].tolist() == [r["p50_ms"] for r in rows]
    from hfmagic.store.db import default_store

    stored = default_store().get(res.run_id)
    assert stored["status"] == "ok" and stored["kind"] == "benchmark"
    assert [r["samples_ms"] for r in stored["rows"]] == [r["samples_ms"] for r in rows]
    assert stored["provenance"]["files"]["fp32"] == tiny_variants["fp32"].sha256
    assert stored["params"]["variants"] == ["fp32", "torch"] and stored["params"]["min_time"] == 0.05


def test_inline_measures_in_this_process_and_restores_threads(shell_with_variants):
    import torch

    before = torch.get_num_threads()
    res = shell_with_variants.run_line_magic(
        "benchmark", f"tv --variants torch,fp32 --batch-sizes 1 --seq-lens 8 --inline {FAST} -o -q")
    assert [r["status"] for r in res.rows] == ["ok", "ok"]
    assert all(r["pid"] == os.getpid() and r["isolation"] == "inline" for r in res.rows)
    assert torch.get_num_threads() == before
    assert any("this kernel process (--inline)" in n for n in res.notes)


def test_real_inputs_add_end_to_end_time(shell_with_variants):
    import pandas as pd

    from hfmagic.store.db import default_store
    from tests.support.tiny import sentences

    shell_with_variants.user_ns["texts"] = pd.DataFrame({"text": sentences(40)})
    res = shell_with_variants.run_line_magic(
        "benchmark", f"tv --variants fp32 --batch-sizes 2 --seq-lens 16 --inputs texts {FAST} -o -q")
    (row,) = res.rows
    assert row["status"] == "ok" and len(row["e2e_samples_ms"]) >= 5
    assert row["e2e_p50_ms"] == pytest.approx(np.median(row["e2e_samples_ms"]))
    assert "e2e p50 ms" in str(res) and any("40 real texts" in n for n in res.notes)
    assert default_store().get(res.run_id)["provenance"]["dataset"]["rows"] == 40


@pytest.mark.parametrize("args, message", [
    ("--variants torch,fp64", "unknown variant 'fp64'; use one of: torch, fp32, O1"),
    ("--backends tensorflow", "unknown backend 'tensorflow'; use one of: torch, torch-compile"),
    ("--seq-lens 600", "sequence length 600 is beyond bert_text_classification0's 512 positions; use --seq-lens up to 512"),
    ("--batch-sizes 0", "batch sizes must be positive whole numbers"),
    ("--variants fp32 --backends torch-compile", "backend torch-compile runs the torch variant"),
    ("--variants torch --backends onnxruntime", "backend onnxruntime runs ONNX variants, and none was chosen"),
    ("--variants torch,fp32 --backends onnxruntime", "no backend in --backends runs variant 'torch' (torch)"),
    ("--variants fp32 --baseline torch", "baseline 'torch' is not in this sweep; use one of: fp32"),
    ("--min-runs 0", "--min-runs must be at least 1"),
    ("--variants fp32 --backends openvino", "pip install hfmagic[openvino]"),
])
def test_bad_input_is_one_line_before_anything_runs(shell_with_variants, capsys, monkeypatch, args, message):
    import importlib.util

    if "openvino" in args:  # make test installs it: take it away to see the hint
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino"
                            else find_spec(name, *a))
    before = runs_in_store()
    res = shell_with_variants.run_cell(f"%benchmark tv {FAST} {args}", store_history=False)
    out = capsys.readouterr()
    assert not res.success and isinstance(res.error_in_exec, UsageError)
    assert message in str(res.error_in_exec)
    assert "Traceback" not in out.out + out.err and len((out.out + out.err).strip().splitlines()) == 1
    assert runs_in_store() == before


@pytest.mark.slow
def test_model_target_exports_and_torch_compile_counts_compiling_in_first_ms(shell, tiny_factory):
    folder = tiny_factory("distilbert", "feature-extraction")
    shell.run_line_magic("load_model", f"{folder} --name fe -q")
    res = shell.run_line_magic("benchmark", f"fe --variants torch,fp32 --backends torch,torch-compile,"
                                            f"onnxruntime --batch-sizes 1 --seq-lens 8 {FAST} -o -q")
    by = {(r["variant"], r["backend"]): r for r in res.rows}
    assert set(by) == {("torch", "torch"), ("torch", "torch-compile"), ("fp32", "onnxruntime")}
    assert all(r["status"] == "ok" for r in res.rows)
    compiled = by["torch", "torch-compile"]
    assert compiled["first_ms"] > 20 * compiled["p50_ms"]  # the compile is in the first run only


def test_quiet_means_no_output_and_no_progress_bar_at_all(shell, tiny_bert, tmp_path, capsys):
    """-q on a model that must be exported first: neither the export's bar nor the sweep's shows."""
    from hfmagic.core.config import settings

    before = settings().cache_dir
    shell.run_line_magic("config", f"HFMagic.cache_dir = {str(tmp_path)!r}")  # nothing cached: it builds
    try:
        shell.run_line_magic("load_model", f"{tiny_bert} --name quiet_one -q")
        capsys.readouterr()
        shell.run_line_magic("benchmark", f"quiet_one --variants fp32 --batch-sizes 1 --seq-lens 8 {FAST} -q")
        said = capsys.readouterr()
        assert (tmp_path / "onnx").is_dir() and (said.out, said.err) == ("", "")
    finally:
        shell.run_line_magic("config", f"HFMagic.cache_dir = {before!r}")
