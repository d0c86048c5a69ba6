"""hfmagic.benchmarking.benchmark(): worker isolation (crash, hang, broken file, a child holding the
pipe), budget, interrupts, openvino and GPU providers, bad baselines, speed-up intervals and noise flags."""

import os
import re
import time

import numpy as np

import pytest

from hfmagic.core.stats import speedup
from tests.support.fast import BENCHMARK_TIMING_KW as FAST_KW


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
    mark = f"{os.getpid()}-{time.monotonic_ns()}"  # in the environment of this sweep's processes only
    monkeypatch.setenv("HFMAGIC_TEST_SWEEP", mark)
    before = {p.pid for p in psutil.process_iter()}
    started = time.monotonic()
    res = benchmark(tiny_variants, variants=["fp32"], batch_sizes=[1, 2, 3], seq_lens=[8], timeout=60, **FAST_KW)
    assert time.monotonic() - started < 40  # a wait for the pipe's end would take the 60 s timeout
    statuses = [r["status"] for r in res.rows]
    assert statuses[0] == "ok" and statuses[2] == "ok"
    assert statuses[1].startswith("crashed: worker killed by SIGKILL")  # not a timeout
    time.sleep(0.5)
    left = [p for p in psutil.process_iter(["cmdline", "environ"]) if p.pid not in before
            and "hfmagic.measure.worker" in " ".join(p.info["cmdline"] or [])
            and (p.info["environ"] or {}).get("HFMAGIC_TEST_SWEEP") == mark]  # not another session's workers
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
    # the note says where the budget went: before the sweep, the worker's start, measuring; they add up
    note = next(n for n in res.notes if n.startswith("budget 4 s"))
    spent = re.search(r"it went to ([\d.]+) s before the sweep \(exports, validation, checks\), ([\d.]+) s starting "
                      r"workers \(each imports its runtime and loads its variant\) and ([\d.]+) s measuring$", note)
    before, starting, measuring = map(float, spent.groups())
    assert starting > 0 and abs(before + starting + measuring - took) < 1.5, (note, took)


def test_budget_skips_what_does_not_fit_and_says_so(tiny_variants):
    from hfmagic.benchmarking.api import benchmark

    res = benchmark(tiny_variants, variants=["fp32"], batch_sizes=[1, 2], seq_lens=[8, 16, 32],
                    budget=0.5, inline=True, order="sequential", **{**FAST_KW, "min_time": 0.2})
    statuses = [r["status"] for r in res.rows]
    assert statuses[0] == "ok" and "skipped: budget" in statuses
    assert set(statuses) == {"ok", "skipped: budget"}
    skipped = [f"fp32/onnxruntime {r['batch_size']}x{r['seq_len']}" for r in res.rows if r["status"] != "ok"]
    note = next(n for n in res.notes if n.startswith("budget 0.5 s"))
    assert f"configurations: {', '.join(skipped)}; it went to " in note and f"skipped {len(skipped)} of 6" in note
    assert " 0.0 s starting workers " in note  # inline: no worker to start
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


def test_speedup_interval_covers_the_true_ratio():

    rng = np.random.default_rng(1)
    slow, fast = rng.normal(10, 0.5, 200), rng.normal(5, 0.25, 200)
    ratio, low, high = speedup(slow, fast)
    assert ratio == pytest.approx(np.median(slow) / np.median(fast))
    assert low < 2.0 < high and high - low < 0.2
    assert speedup([3.0], [1.5]) == (2.0, None, None)


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
    import hfmagic.benchmarking.api
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.core.errors import UsageProblem

    def no_export(*args, **kwargs):
        raise AssertionError("exported before the baseline was checked")

    monkeypatch.setattr(hfmagic.benchmarking.api, "export_all", no_export)  # where benchmark() finds it
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
