"""Images/s of the vision demo (digits-vit) in PyTorch eager against its fastest variant inside the
99% accuracy gate, at batch 1 and batch 8, 2 threads, in one interleaved run.

The digits ViT (trained here on scikit-learn's digits, 32 px, 8-pixel patches), its default
variants (fp32, O2 and their dynamic int8 twins), accuracy of each on its 360 held-out digits
(hfmagic.evaluate, reference torch), then one interleaved sweep of torch and every variant that
passed the gate at both batch sizes. The CPU's flags are printed beside the figures; the batch-8
speed-up is printed last.

    python benchmarks/vision.py [--min-time 1] [--max-time 30]
"""

import argparse

from hfmagic.benchmarking.api import benchmark
from hfmagic.core.envcard import cpu_flags, cpu_model
from hfmagic.evaluation.api import evaluate
from hfmagic.export.api import export_onnx
from hfmagic.models.handle import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--max-time", type=float, default=30.0)
    args = parser.parse_args()
    model = load_model("digits-vit")
    variants = export_onnx(model, progress=False)
    quality = evaluate(variants, progress=False, batch_size=[1, 8])  # gated at both sizes timed below
    rows = {r["variant"]: r for r in quality.rows if r["status"] == "ok"}
    for name, r in rows.items():
        print(f"{name:8s} accuracy {r['accuracy']:.4f} [{r['accuracy_low']:.4f}, {r['accuracy_high']:.4f}] "
              f"({r['pct_of_reference']:.1f}% of torch) {r.get('gate')} at batch {r['batch_size']}")
    passing = [n for n, r in rows.items() if n != "torch" and r.get("gate") == "pass"]
    result = benchmark(variants, variants=["torch", *passing], batch_sizes=[1, 8], threads=2,
                       min_time=args.min_time, max_time=args.max_time, progress=False)
    print(result)
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))
    print(f"CPU: {cpu_model()}; flags: {' '.join(flags)}; avx512_vnni: {'yes' if 'avx512_vnni' in flags else 'no'}")
    line = ""
    for batch in (1, 8):
        shape = [r for r in result.rows if r["batch_size"] == batch and r["status"] == "ok"]
        eager = next(r for r in shape if r["variant"] == "torch")
        best = max((r for r in shape if r["variant"] != "torch"), key=lambda r: r["samples_per_s"])
        line = (f"batch {batch}: torch eager {eager['samples_per_s']:.0f} images/s; fastest inside the gate "
                f"{best['variant']} {best['samples_per_s']:.0f} images/s; images/s speed-up (95% CI "
                f"{best['speedup_low']:.2f}-{best['speedup_high']:.2f}): {best['speedup']:.2f}")
        print(line)


if __name__ == "__main__":
    main()
