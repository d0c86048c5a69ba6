"""Interleaved rounds (the default order): random order per round, speed-ups paired by round, idle
workers not spinning, the adaptive stop, the memory groups and Ctrl-C keeping slices, with real
worker processes on a tiny model."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hfmagic.core import stats

KW = dict(threads=1, warmup=1, min_runs=3, min_time=0.05, progress=False)


@pytest.fixture(scope="module")
def variants(tiny_bert):
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model

    return export_onnx(load_model(tiny_bert), levels=["fp32"], quantize="auto", progress=False)


def test_every_round_visits_every_configuration_once_in_a_fresh_random_order(variants):
    from hfmagic.benchmarking.api import benchmark

    res = benchmark(variants, batch_sizes=[1, 2], seq_lens=[8], max_time=3, ci_target=0.5, **KW)
    configs = {f"{r['variant']}/{r['backend']}/{r['batch_size']}x{r['seq_len']}" for r in res.rows}
    assert len(configs) == 6 and all(r["status"] == "ok" for r in res.rows)
    by_round: dict[int, list[str]] = {}
    for round_no, config in res.schedule:
        by_round.setdefault(round_no, []).append(config)
    complete = [order for order in by_round.values() if len(order) == len(configs)]
    assert len(complete) >= 5 and all(sorted(order) == sorted(configs) for order in complete)
    assert len({tuple(order) for order in complete}) > 1  # the order changes from round to round
    for row in res.rows:  # each row keeps its raw samples with their rounds
        assert len(row["sample_rounds"]) == len(row["samples_ms"]) == row["runs"]
        assert set(row["sample_rounds"]) == set(range(1, row["rounds"] + 1))


def test_the_speed_up_is_paired_by_round(variants):
    from hfmagic.benchmarking.api import benchmark

    res = benchmark(variants, batch_sizes=[1], seq_lens=[8], max_time=3, ci_target=0.5, **KW)
    base = next(r for r in res.rows if r["variant"] == "torch")
    for row in res.rows:
        if row is base:
            assert row["speedup"] == 1.0
            continue
        mb = stats.slice_medians(base["samples_ms"], base["sample_rounds"])
        mr = stats.slice_medians(row["samples_ms"], row["sample_rounds"])
        again = stats.paired_speedup(mb, mr, stats.disturbed(mb) | stats.disturbed(mr))
        assert row["speedup"] == pytest.approx(again["ratio"]) and row["speedup_low"] == pytest.approx(again["low"])
        assert row["speedup_rounds"] == again["rounds_used"]
        # the geometric mean of the per-round ratios of the rounds it used
        used = [r for r in sorted(set(mb) & set(mr))
                if not again["clean"] or r not in stats.disturbed(mb) | stats.disturbed(mr)]
        assert row["speedup"] == pytest.approx(float(np.exp(np.mean([np.log(mb[r] / mr[r]) for r in used]))))
    assert any(n.startswith("interleaved: ") for n in res.notes)


def test_pairing_cancels_a_load_that_hits_both_sides():
    """A baseline twice as slow as the variant in every round, with every round's level moved by
    up to 3x by a 'neighbour': the paired figure is exactly 2; the ratio of pooled medians is not."""
    rng = np.random.default_rng(1)
    load = rng.uniform(1, 3, size=40)
    base = {r + 1: 2.0 * load[r] for r in range(40)}
    this = {r + 1: 1.0 * load[r] for r in range(40)}
    found = stats.paired_speedup(base, this)
    assert found["ratio"] == pytest.approx(2.0) and found["high"] - found["low"] < 1e-9
    shifted = dict(this)
    for r in range(1, 11):  # the variant alone slowed in 10 rounds: those are disturbed, left out
        shifted[r] *= 5
    found = stats.paired_speedup(base, shifted, stats.disturbed(shifted))
    assert found["clean"] and found["rounds_used"] <= 30 and found["ratio"] == pytest.approx(2.0)


@pytest.mark.parametrize("variant,backend", [("fp32", "onnxruntime"), ("torch", "torch")])
def test_an_idle_worker_takes_no_cpu_while_another_measures(variants, variant, backend):
    import psutil

    from hfmagic.benchmarking.sweep import Sweep
    from hfmagic.benchmarking.plan import Job
    from hfmagic.measure.worker import WorkerProcess

    sweep = Sweep([variants.model], [], None, {"threads": 2, "warmup": 1, "min_runs": 3, "min_time": 0.05},
                  None, None, False, 60, None, {})
    idle_job, busy_job = Job(variants[variant], backend, [(4, 64)]), Job(variants["fp32"], "onnxruntime", [(4, 64)])
    idle = WorkerProcess({**sweep.job_spec(idle_job, idle_job.shapes), "serve": True})
    busy = WorkerProcess({**sweep.job_spec(busy_job, busy_job.shapes), "serve": True})
    try:
        for w in (idle, busy):
            assert w.next(300)["type"] == "ready"
        idle.send({"cmd": "slice", "shape": [4, 64], "runs": 20, "round": 1})  # it has just measured
        assert "samples_ms" in idle.next(60)
        before = psutil.Process(idle.proc.pid).cpu_times()
        start = time.time()
        while time.time() - start < 1.5:
            busy.send({"cmd": "slice", "shape": [4, 64], "runs": 20, "round": 2})
            assert "samples_ms" in busy.next(60)
        after = psutil.Process(idle.proc.pid).cpu_times()
        spent = (after.user + after.system) - (before.user + before.system)
        assert spent < 0.05, f"the idle {variant}/{backend} worker used {spent:.3f} s of CPU in 1.5 s"
    finally:
        idle.close()
        busy.close()


def test_the_rounds_stop_at_the_target_or_at_max_time(variants):
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.benchmarking.rounds import Rounds

    events = []
    loose = benchmark(variants, variants=["torch", "fp32"], batch_sizes=[1], seq_lens=[8], ci_target=0.9,
                      max_time=30, callback=events.append, **KW)
    rounds = max(r["rounds"] for r in loose.rows)
    # the target holds after the first rounds, unless a busy machine made a round's pair an outlier:
    # then the rounds went on exactly until it held
    fp32, torch_row = (next(r for r in loose.rows if r["variant"] == v) for v in ("fp32", "torch"))

    def width(upto):
        mb, mr = (stats.slice_medians(r["samples_ms"], r["sample_rounds"]) for r in (torch_row, fp32))
        mb, mr = ({k: v for k, v in m.items() if k <= upto} for m in (mb, mr))
        found = stats.paired_speedup(mb, mr, stats.disturbed(mb) | stats.disturbed(mr), resamples=400)
        return (found["high"] - found["low"]) / 2 / found["ratio"]

    assert rounds >= Rounds.MIN_ROUNDS and width(rounds) <= 0.9
    assert rounds == Rounds.MIN_ROUNDS or width(rounds - 1) > 0.9
    # a live dashboard gets each configuration's row after every round, then the final one
    live = [e["row"] for e in events if e["type"] == "row" and e["row"]["variant"] == "fp32"]
    assert [r["rounds"] for r in live] == [*range(1, rounds + 1), rounds]
    assert live[0]["speedup"] and live[0]["speedup_low"] is None  # one round: a ratio, no interval yet
    from hfmagic.core.stats import speedup_text as _speedup_text

    assert live[0]["speedup_trust"] is False and "not trustworthy: 1 rounds" in _speedup_text(live[0])
    final = next(r for r in loose.rows if r["variant"] == "fp32")  # trusted exactly when 5 clean pairs were there
    base = next(r for r in loose.rows if r["variant"] == "torch")
    mb = stats.slice_medians(base["samples_ms"], base["sample_rounds"])
    mr = stats.slice_medians(final["samples_ms"], final["sample_rounds"])
    assert final["speedup_trust"] is stats.paired_speedup(mb, mr, stats.disturbed(mb) | stats.disturbed(mr))["trust"]
    assert ("not trustworthy" in _speedup_text(final)) is (not final["speedup_trust"])
    assert all(r["speedup_low"] <= r["speedup"] <= r["speedup_high"] for r in live[1:])
    assert live[-1]["p50_ms"] == next(r for r in loose.rows if r["variant"] == "fp32")["p50_ms"]
    start = time.time()
    tight = benchmark(variants, variants=["torch", "fp32"], batch_sizes=[1], seq_lens=[8], ci_target=1e-9,
                      max_time=2, **KW)
    took = time.time() - start
    assert max(r["rounds"] for r in tight.rows) > Rounds.MIN_ROUNDS and took < 30
    fp32 = next(r for r in tight.rows if r["variant"] == "fp32")
    assert (fp32["speedup_high"] - fp32["speedup_low"]) / 2 / fp32["speedup"] > 1e-9  # it stopped on time


def test_workers_that_do_not_fit_together_run_in_groups_with_the_baseline_in_each(variants, monkeypatch):
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.measure import memory

    guard = memory.MemoryGuard(variants.model.config, variants.model.weights_bytes, {"torch", "onnx"}, 1 << 40)
    torch_need, onnx_need = guard.needed(1, 8, "torch"), guard.needed(1, 8, "onnx")
    # room for the baseline (torch) and one ONNX worker at a time, not for both ONNX ones
    monkeypatch.setattr(memory, "available_memory", lambda: int((torch_need + 1.5 * onnx_need) / 0.8))
    res = benchmark(variants, batch_sizes=[1], seq_lens=[8], max_time=3, ci_target=0.5, **KW)
    assert all(r["status"] == "ok" for r in res.rows) and len(res.rows) == 3
    assert any(n.startswith("memory: the 3 workers would not fit together") and "groups" in n for n in res.notes)
    assert all(r["speedup"] is not None for r in res.rows)


def test_sequential_order_still_measures_one_configuration_after_another(variants):
    from hfmagic.benchmarking.api import benchmark

    res = benchmark(variants, variants=["torch", "fp32"], batch_sizes=[1], seq_lens=[8], order="sequential", **KW)
    assert res.schedule == [] and all(r["rounds"] is None and r["status"] == "ok" for r in res.rows)
    base, fp32 = res.rows
    assert fp32["speedup"] == pytest.approx(stats.speedup(base["samples_ms"], fp32["samples_ms"])[0])


def test_ctrl_c_keeps_every_finished_slice(tmp_path, tiny_bert):
    env = {**os.environ, "HFMAGIC_CACHE_DIR": str(tmp_path)}
    code = ("import json, hfmagic\n"
            f"r = hfmagic.benchmark({str(tiny_bert)!r}, variants=['torch', 'fp32'], batch_sizes=[1, 2], "
            "seq_lens=[8], threads=1, warmup=1, min_runs=3, min_time=0.05, ci_target=1e-9, max_time=600, "
            "progress=False)\n"
            "print(json.dumps([[x['variant'], x['status'], x['runs'], x['rounds']] for x in r.rows]))\n"
            "print(json.dumps(r.notes))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    deadline = time.time() + 180
    import psutil

    while time.time() < deadline:  # until both workers serve slices (the rounds have begun)
        kids = psutil.Process(proc.pid).children(recursive=True)
        if sum(k.cpu_times().user > 1 for k in kids) >= 2 or proc.poll() is not None:
            break  # (on a busy machine only the two measuring workers count)
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    rows, notes = (json.loads(line) for line in out.strip().splitlines()[-2:])
    assert [r[1] for r in rows] == ["ok"] * 4, err
    assert all(r[2] >= 3 and r[3] >= 1 for r in rows)
    assert any("interrupted" in n for n in notes)


def test_a_crash_costs_its_shape_and_a_fresh_worker_takes_the_rest(variants, monkeypatch):
    from hfmagic.benchmarking.api import benchmark

    monkeypatch.setenv("HFMAGIC_WORKER_FAULT", "crash:fp32:2x8")
    res = benchmark(variants, variants=["torch", "fp32"], batch_sizes=[1, 2, 3], seq_lens=[8], max_time=3,
                    ci_target=0.5, **KW)
    fp32 = {r["batch_size"]: r for r in res.rows if r["variant"] == "fp32"}
    assert fp32[2]["status"].startswith("crashed: worker killed by SIGKILL")
    assert fp32[1]["status"] == fp32[3]["status"] == "ok"


def test_a_budget_ends_the_rounds_and_cuts_a_hung_slice(variants, monkeypatch):
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.benchmarking.rounds import BUDGET_GRACE_S

    monkeypatch.setenv("HFMAGIC_WORKER_FAULT", "hang:fp32:2x8")
    started = time.monotonic()
    res = benchmark(variants, variants=["fp32"], batch_sizes=[1, 2], seq_lens=[8], budget=8, timeout=120,
                    ci_target=1e-9, **KW)
    took = time.monotonic() - started
    assert took < 8 + BUDGET_GRACE_S + 5, f"an 8 s budget took {took:.1f} s"
    statuses = {r["batch_size"]: r["status"] for r in res.rows}
    assert statuses[1] == "ok" and statuses[2] == "skipped: budget"


def test_max_time_ends_the_rounds_between_rounds_so_every_configuration_is_measured(variants):
    """A first round slower than --max-time (warm-ups on a busy machine) still measures everything."""
    from hfmagic.benchmarking.api import benchmark

    res = benchmark(variants, batch_sizes=[1, 2], seq_lens=[8], max_time=0.01, ci_target=1e-9,
                    **{**KW, "warmup": 5})
    assert [r["status"] for r in res.rows] == ["ok"] * 6 and all(r["rounds"] >= 1 for r in res.rows)
