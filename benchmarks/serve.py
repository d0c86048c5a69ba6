"""Serving: the highest request rate inside a p99 SLO, per served configuration, on this machine.

The demo classifier's fp32 and int8 (dynamic, per-channel) on Ray Serve (127.0.0.1), each with
dynamic batching off (one request per batch) and on (up to 8, waiting 5 ms), with one replica and
two (one thread each), served one configuration at a time. The SLO is chosen from the measured
single-request latency: 4 x fp32's median over 30 sequential requests of the texts sent (it says
which). Each configuration is load-tested open-loop (Poisson arrivals) at rates from a quarter of
fp32's one-at-a-time capacity to twice it, for --duration seconds each (a request unanswered after
10 x the SLO, at least 2 s, is a timeout: a saturated rate's queue is not waited out); its highest rate whose
row is ok (inside the SLO, no errors, achieved what was offered, the generator on schedule) is its
figure. Prints the table of every configuration and rate, the generator's own CPU share, and last
the best configuration's rate over fp32's without batching on one replica.

    python benchmarks/serve.py [--duration 6]
"""

import argparse

from hfmagic.core.envcard import cpu_flags
from hfmagic.export.api import export_onnx
from hfmagic.models.handle import load_model
from hfmagic.serving.api import serve, stop_all
from hfmagic.serving.loadtest import loadtest, one_at_a_time

CONFIGS = [("fp32", 1, 1, 0.0), ("fp32", 8, 1, 5.0), ("fp32", 1, 2, 0.0),
           ("int8", 1, 1, 0.0), ("int8", 8, 1, 5.0), ("int8", 1, 2, 0.0)]  # variant, max batch, replicas, wait ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0)
    args = parser.parse_args()
    variants = export_onnx(load_model("demo"), levels=["fp32"], quantize="dynamic", progress=False)
    from hfmagic.tasks.text.demo import split

    texts = split()[1]["text"].tolist()[:200]  # the demo's held-out articles, sent in turn
    flags = ", ".join(sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")))
    results, slo_ms, rates = [], None, None
    try:
        for variant, batch, replicas, wait in CONFIGS:
            handle = serve(variants, variant=variant, max_batch=batch, replicas=replicas, batch_wait_ms=wait,
                           name=f"{variant}-b{batch}-r{replicas}")
            if slo_ms is None:  # fp32, one request at a time: the SLO and the rates follow from it
                single = one_at_a_time(handle, texts)
                slo_ms = 4 * single
                capacity = 1000 / single
                rates = sorted({round(capacity * f, 1) for f in (0.25, 0.5, 1, 1.5, 2)})
                print(f"fp32 one request at a time: median {single:.1f} ms; SLO p99 {slo_ms:.0f} ms (4 x it); "
                      f"rates {rates} /s", flush=True)
            results.append(loadtest(handle, rates=rates, duration=args.duration, slo_p99=f"{slo_ms}ms", data=texts,
                                    timeout=max(2.0, 10 * slo_ms / 1000), progress=False))
            print(results[-1], flush=True)
            handle.stop()
    finally:
        stop_all()
    cpu = max((row["generator_cpu"] for r in results for row in r.rows if row.get("generator_cpu")), default=0)
    print(f"CPU flags: {flags}; the generator's own CPU: up to {cpu:.0%} of one core (2 cores shared with the server)")
    summary(results, "fp32-b1-r1", f"inside {slo_ms:.0f} ms p99", "fp32 without batching on one replica", flags)


def summary(results, base: str, inside: str, against: str, flags: str) -> None:
    """Each configuration's highest rate ``inside`` the SLO, then (printed last) the best one's
    over ``base``'s, or why there is no ratio (serve_llm.py's last lines too)."""
    best = {}
    for r in results:
        best.update(r.best())
    for name, rate in best.items():
        print(f"{name:>14}: highest rate {inside}: {rate if rate else 'none'}")
    winner = max(best, key=lambda n: best[n] or 0)
    if best.get(base) and best[winner]:
        print(f"best configuration's rate {inside} over {against} (CPU flags: {flags}): {winner} {best[winner]:g}/s "
              f"over {best[base]:g}/s = {best[winner] / best[base]:.2f}x")
    else:
        print(f"best configuration's rate {inside} over {against}: not measured ({base}: {best.get(base)}, {winner}: "
              f"{best.get(winner)})")


if __name__ == "__main__":
    main()
