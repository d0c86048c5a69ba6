"""%benchmark: figures from raw samples, worker isolation (crash, hang, broken file), budget,
interrupts, inline mode, real inputs, bad input, and the command line, on tiny models."""

import os
import subprocess
import sys

import numpy as np
import time

import pytest
from IPython.core.error import UsageError

from hfmagic.core.stats import speedup
from tests.support.fast import BENCHMARK_TIMING as FAST, BENCHMARK_TIMING_KW as FAST_KW
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


def test_crash_hang_error_and_broken_file_stay_in_their_rows(tiny_variants, monkeypatch):
    from hfmagic.benchmarking.api import benchmark

    monkeypatch.setenv("HFMAGIC_WORKER_FAULT", "crash:fp32:1x16,raise:fp32:3x8,hang:fp32:3x16")
    res = benchmark(tiny_variants, variants=["fp32", "O1"], batch_sizes=[1, 2, 3], seq_lens=[8, 16],
                    timeout=3, order="sequential", **FAST_KW)
    fp32 = {(r["batch_size"], r["seq_len"]): r for r in res.rows if r["variant"] == "fp32"}
    assert fp32[1, 8]["status"] == "ok"
    assert fp32[1, 16]["status"].startswith("crashed: worker killed by SIGKILL (out of memory?")
    assert fp32[2, 8]["status"] == "ok" and fp32[2, 8]["pid"] != fp32[1, 8]["pid"]  # a fresh worker
    assert fp32[3, 8]["status"] == "failed: RuntimeError: fault injected by HFMAGIC_WORKER_FAULT"
    assert fp32[2, 16]["status"] == "ok" and fp32[2, 16]["pid"] == fp32[2, 8]["pid"]  # it lived on
    assert fp32[3, 16]["status"].startswith("timeout: no result within 3 s (worker killed")
    broken = [r for r in res.rows if r["variant"] == "O1"]
    assert len(broken) == 6
    assert all(r["status"].startswith("failed to load: ") and "model_optimized.onnx" in r["status"]
               for r in broken)
    assert all(r["p50_ms"] is None and r["samples_ms"] == [] for r in broken)
    assert "speed-ups are against fp32/onnxruntime" in " ".join(res.notes)


def test_a_child_left_holding_the_pipe_neither_hangs_the_sweep_nor_outlives_it(tiny_variants, monkeypatch):
    """A library in the worker may fork a child that keeps the worker's stdout (OpenVINO's telemetry
    sender did): the sweep still ends on time, crash included, and the child is killed with it."""
    import psutil

    from hfmagic.benchmarking.api import benchmark

    monkeypatch.setenv("HFMAGIC_WORKER_FAULT", "orphan:fp32:1x8,crash:fp32:2x8")
    before = {p.pid for p in psutil.process_iter()}
    started = time.monotonic()
    res = benchmark(tiny_variants, variants=["fp32"], batch_sizes=[1, 2, 3], seq_lens=[8], timeout=60, **FAST_KW)
    assert time.monotonic() - started < 40  # a wait for the pipe's end would take the 60 s timeout
    statuses = [r["status"] for r in res.rows]
    assert statuses[0] == "ok" and statuses[2] == "ok"
    assert statuses[1].startswith("crashed: worker killed by SIGKILL")  # not a timeout
    time.sleep(0.5)
    left = [p for p in psutil.process_iter(["cmdline"]) if p.pid not in before
            and "hfmagic.measure.worker" in " ".join(p.info["cmdline"] or [])]
    assert left == []


def test_budget_bounds_the_sweeps_wall_time_with_workers(tiny_variants, monkeypatch):
    """A shape still measuring when the budget ends (here: one that hangs) is cut, not waited for
    until --timeout; worker start-up counts against the budget."""
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.benchmarking.rounds import BUDGET_GRACE_S

    monkeypatch.setenv("HFMAGIC_WORKER_FAULT", "hang:fp32:2x16")
    started = time.monotonic()
    res = benchmark(tiny_variants, variants=["fp32"], batch_sizes=[1, 2, 4], seq_lens=[16], budget=4,
                    timeout=60, order="sequential", **FAST_KW)
    took = time.monotonic() - started
    assert [r["status"] for r in res.rows] == ["ok", "skipped: budget", "skipped: budget"]
    assert took < 4 + BUDGET_GRACE_S + 3, f"a 4 s budget took {took:.1f} s"  # + killing the worker


def test_budget_skips_what_does_not_fit_and_says_so(tiny_variants):
    from hfmagic.benchmarking.api import benchmark

    res = benchmark(tiny_variants, variants=["fp32"], batch_sizes=[1, 2], seq_lens=[8, 16, 32],
                    budget=0.5, inline=True, order="sequential", **{**FAST_KW, "min_time": 0.2})
    statuses = [r["status"] for r in res.rows]
    assert statuses[0] == "ok" and "skipped: budget" in statuses
    assert set(statuses) == {"ok", "skipped: budget"}
    skipped = [f"fp32/onnxruntime {r['batch_size']}x{r['seq_len']}" for r in res.rows if r["status"] != "ok"]
    note = next(n for n in res.notes if n.startswith("budget 0.5 s"))
    assert note.endswith(", ".join(skipped)) and f"skipped {len(skipped)} of 6" in note
    assert sum(sum(r["samples_ms"]) for r in res.rows) / 1000 < 0.5


def test_interrupt_keeps_finished_rows_and_stops_the_worker(tiny_variants):
    import psutil

    from hfmagic.benchmarking.api import benchmark
    from hfmagic.store.db import default_store

    events = []

    def callback(event):
        events.append(event)
        if event["type"] == "row" and len([e for e in events if e["type"] == "row"]) == 2:
            raise KeyboardInterrupt  # what Ctrl-C / the stop button raises in the kernel

    res = benchmark(tiny_variants, variants=["fp32"], batch_sizes=[1, 2], seq_lens=[8, 16],
                    callback=callback, order="sequential", **FAST_KW)
    assert [r["status"] for r in res.rows] == ["ok", "ok", "skipped: interrupted", "skipped: interrupted"]
    assert "interrupted: 2 of 4 configurations finished" in " ".join(res.notes)
    assert not psutil.pid_exists(res.rows[0]["pid"])
    assert default_store().get(res.run_id)["status"] == "interrupted"
    progress = [e for e in events if e["type"] == "progress"]
    assert progress[0] == {"type": "progress", "done": 0, "total": 4, "label": "loading fp32/onnxruntime"}
    assert progress[1]["done"] == 1 and "fp32/onnxruntime 1x8: ok" in progress[1]["label"]
    assert [e["row"] for e in events if e["type"] == "row"] == res.rows[:2]


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


@pytest.mark.parametrize("inline", [False, True])
def test_openvino_measures_onnx_variants_and_stays_quiet(tiny_variants, tmp_path, monkeypatch, inline):
    """The openvino backend for real (make test installs it), in a worker and inline; its telemetry
    stays off: nothing is written to the home folder (it wrote ~/intel/ and forked a sender)."""
    from hfmagic.benchmarking.api import benchmark

    monkeypatch.setenv("HOME", str(tmp_path))
    res = benchmark(tiny_variants, variants=["fp32"], backends=["openvino", "onnxruntime"],
                    batch_sizes=[1, 2], seq_lens=[16], inline=inline, **FAST_KW)
    rows = {(r["backend"], r["batch_size"]): r for r in res.rows}
    assert set(rows) == {("openvino", 1), ("openvino", 2), ("onnxruntime", 1), ("onnxruntime", 2)}
    for key, row in rows.items():
        assert row["status"] == "ok", (key, row["status"])
        assert row["p50_ms"] > 0 and len(row["samples_ms"]) >= FAST_KW["min_runs"]
    assert list(tmp_path.iterdir()) == []


def test_missing_gpu_provider_is_a_row_with_its_reason(tiny_variants, capsys):
    from hfmagic.backends import OnnxRuntimeCuda
    from hfmagic.benchmarking.api import benchmark

    if OnnxRuntimeCuda.is_available()[0]:
        pytest.skip("this machine has onnxruntime's CUDA provider")
    res = benchmark(tiny_variants, variants=["fp32"], backends=["onnxruntime", "onnxruntime-cuda"],
                    batch_sizes=[1], seq_lens=[8], **{**FAST_KW, "progress": True})
    err = capsys.readouterr().err
    line = "hfmagic: onnxruntime-cuda unavailable: onnxruntime"
    assert err.splitlines()[0].startswith(line) and "no CUDAExecutionProvider" in err.splitlines()[0]
    ort, cuda = res.rows
    assert ort["status"] == "ok" and cuda["status"].startswith("unavailable: onnxruntime")
    assert "it needs the onnxruntime-gpu package" in cuda["status"]
    assert any(n.startswith("onnxruntime-cuda unavailable") for n in res.notes)


def test_command_line_prints_the_table(tiny_bert):
    ok = subprocess.run([sys.executable, "-m", "hfmagic", "benchmark", str(tiny_bert), "--variants", "torch",
                         "--batch-sizes", "1", "--seq-lens", "8", *FAST.split()],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    header, rule, row = ok.stdout.splitlines()[1:4]
    assert header.split()[:5] == ["variant", "backend", "batch", "seq", "p50"]
    assert row.split()[:4] == ["torch", "torch", "1", "8"] and row.split()[-1] == "ok"
    bad = subprocess.run([sys.executable, "-m", "hfmagic", "benchmark", str(tiny_bert), "--seq-lens", "9999"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("hfmagic: sequence length 9999 is beyond")
    assert bad.stderr.strip().count("\n") == 0


def test_speedup_interval_covers_the_true_ratio():

    rng = np.random.default_rng(1)
    slow, fast = rng.normal(10, 0.5, 200), rng.normal(5, 0.25, 200)
    ratio, low, high = speedup(slow, fast)
    assert ratio == pytest.approx(np.median(slow) / np.median(fast))
    assert low < 2.0 < high and high - low < 0.2
    assert speedup([3.0], [1.5]) == (2.0, None, None)


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


def test_a_variant_that_did_not_build_is_an_onnx_row_with_its_reason(tiny_variants):
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.models.variants import Variant, Variants

    failed = Variant("O2", tiny_variants.model, level="O2", error="BuildError: the optimizer refused")
    vset = Variants(tiny_variants.model, [tiny_variants["fp32"], failed])
    res = benchmark(vset, variants=["fp32", "O2"], backends=["onnxruntime"], batch_sizes=[1], seq_lens=[8],
                    inline=True, **FAST_KW)
    ok, o2 = res.rows
    assert ok["status"] == "ok"
    assert (o2["variant"], o2["backend"]) == ("O2", "onnxruntime")  # not planned on torch for lack of a file
    assert o2["status"] == "failed: the variant did not build: BuildError: the optimizer refused"
    assert o2["size_mb"] is None and o2["p50_ms"] is None


def test_a_bad_baseline_is_refused_before_anything_is_exported(tiny_bert, monkeypatch):
    import hfmagic.export.api
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.core.errors import UsageProblem

    def no_export(*args, **kwargs):
        raise AssertionError("exported before the baseline was checked")

    monkeypatch.setattr(hfmagic.export.api, "export_onnx", no_export)
    with pytest.raises(UsageProblem, match="baseline 'O3' is not in this sweep; use one of: torch, fp32, O2"):
        benchmark(str(tiny_bert), baseline="O3", **FAST_KW)
    with pytest.raises(UsageProblem, match="baseline 'torch/onnxruntime' is not in this sweep"):
        benchmark(str(tiny_bert), variants=["torch", "fp32"], baseline="torch/onnxruntime", **FAST_KW)


def test_noise_flags_and_figures_of_known_samples():
    from hfmagic.core.stats import noise, summarize

    from hfmagic.tasks import get_task

    steady = summarize([10.0, 10.0, 10.0, 10.0], batch_size=4)
    assert noise(steady) == [] and steady["samples_per_s"] == pytest.approx(4 * 4 / 0.040)
    assert steady["std_ms"] == 0
    tokens = get_task("text-classification").measurement.throughput(steady["samples_per_s"], 32)["tokens_per_s"]
    assert tokens == pytest.approx(400 * 32)
    assert get_task("image-classification").measurement.throughput(steady["samples_per_s"], 224) == {}  # images/s is samples/s
    spiky = summarize([10.0, 10.0, 10.0, 50.0], batch_size=1)
    assert spiky["p50_ms"] == 10.0 and spiky["mean_ms"] == 20.0
    assert noise(spiky) == [f"CV {spiky['cv']:.0%} > 10%", "slowest 5.0x the fastest"]


def test_peak_memory_is_reset_between_shapes():
    from hfmagic.measure.worker import peak_memory_mb, reset_peak_memory

    block = np.ones(40_000_000)  # 320 MB, touched
    high = peak_memory_mb()
    del block
    if not reset_peak_memory():
        pytest.skip("this system cannot reset the peak resident set size")
    assert peak_memory_mb() < high - 250


@pytest.mark.parametrize("allow, expected", [(None, "1"), ("1", None)])
def test_workers_start_with_onnxruntime_telemetry_off(allow, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "HFMAGIC_ALLOW_TELEMETRY")}
    if allow:
        env["HFMAGIC_ALLOW_TELEMETRY"] = allow
    out = subprocess.run([sys.executable, "-c", "import os, hfmagic.measure.worker; "
                          "print(os.environ.get('ORT_DISABLE_TELEMETRY'))"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(expected)


def test_a_gpu_provider_that_does_not_start_is_unavailable_not_failed(tiny_variants, monkeypatch):
    """onnxruntime falls back to the CPU when a listed GPU provider cannot start (no GPU, no driver):
    that configuration's rows say unavailable, with the reason. Only the availability check is told
    a GPU is there; the real load then asks onnxruntime for the CUDA provider and gets the CPU's."""
    import onnxruntime as ort_lib

    from hfmagic.backends import OnnxRuntimeCuda
    from hfmagic.benchmarking.api import benchmark

    if "CUDAExecutionProvider" in ort_lib.get_available_providers():
        pytest.skip("this machine's onnxruntime has the CUDA provider: it would start")
    monkeypatch.setattr(OnnxRuntimeCuda, "is_available", classmethod(lambda cls: (True, "")))
    res = benchmark(tiny_variants, variants=["fp32"], backends=["onnxruntime", "onnxruntime-cuda"],
                    batch_sizes=[1], seq_lens=[8], inline=True, **FAST_KW)
    ort, cuda = res.rows
    assert ort["status"] == "ok"
    assert cuda["status"].startswith("unavailable: CUDAExecutionProvider did not start")
    assert "the CUDA/cuDNN libraries" in cuda["status"]


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
