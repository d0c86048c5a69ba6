"""What a remote worker costs: the same sweep here and on a one-node Ray cluster on this machine.

Measured side by side in one run (demo-small's fp32 variant on onnxruntime, and torch, batch 1 x
seq 32, 2 threads): each worker's start (``startup_s``: here, the worker process's start and
imports; on the cluster, also the actor's scheduling), the files sent to the node (``transfer_mb``,
``transfer_s``: the first sweep sends the model's and the variant's folders; a second finds them
there), the variant's load, the sweep's wall time, and the p50 each measured (it should not move:
timing happens on the node). Prints the cluster's per-worker overhead over the local one last.

    python benchmarks/cluster.py
"""

import os
import sys
import time

os.environ.setdefault("HFMAGIC_STORE", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main() -> None:
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.core.envcard import cpu_flags, cpu_model
    from hfmagic.export.api import export_onnx
    from hfmagic.cluster.local import LocalCluster
    from hfmagic.models.handle import load_model

    model = load_model("demo-small")
    variants = export_onnx(model, levels=["fp32"], quantize="none", progress=False)
    args = dict(variants=["torch", "fp32"], batch_sizes=[1], seq_lens=[32], threads=2, min_time=0.5,
                max_time=6, progress=False)
    flags = "/".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in cpu_flags())
    print(f"{cpu_model()} ({flags}), {os.cpu_count()} CPUs; demo-small, batch 1 x seq 32, 2 threads")
    table = []
    t0 = time.perf_counter()
    here = benchmark(variants, **args)
    table.append(("here", time.perf_counter() - t0, here.rows))
    with LocalCluster([{"bench": 1}], cpus=2) as lc:
        for label in ("cluster, first", "cluster, again"):
            t0 = time.perf_counter()
            there = benchmark(variants, cluster=lc.address, **args)
            table.append((label, time.perf_counter() - t0, there.rows))
    print(f"{'':16} {'wall s':>7}  {'variant':8} {'start s':>8} {'sent MB':>8} {'send s':>7} {'load s':>7} {'p50 ms':>8}")
    for label, wall, rows in table:
        for r in rows:
            print(f"{label:16} {wall:7.1f}  {r['variant']:8} {r['startup_s']:8.2f} {r['transfer_mb'] or 0:8.1f} "
                  f"{r['transfer_s'] or 0:7.2f} {r['load_s']:7.2f} {r['p50_ms']:8.2f}")

    def cost(rows):
        return sum(r["startup_s"] + (r["transfer_s"] or 0) + r["load_s"] for r in rows) / len(rows)

    local, first, again = (cost(rows) for _, _, rows in table)
    print(f"per-worker start + transfer + load: here {local:.2f} s, cluster {first:.2f} s (files sent), "
          f"{again:.2f} s (files there)")
    print(f"remote worker overhead, files already on the node: {again / local:.2f}x the local worker's "
          f"({again - local:+.2f} s per worker)")


if __name__ == "__main__":
    sys.exit(main())
