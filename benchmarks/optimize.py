"""%optimize against Olive's pick and the fixed recipes, on the demo classifier (and SmolLM2 with --llm).

Method (the demo): the search from an empty export cache (a fresh folder inside hfmagic's cache folder,
the demo model copied into it so that its one-off build is not counted), batch 1 x seq 128,
2 threads, every backend installed, all 445 held-out articles; its wall time is measured around
``hfmagic.optimize``. Then Olive's pick for BERT, the transformer-fused graph with dynamic uint8
per-tensor weights, rebuilt with onnxruntime's own tools as Olive's passes call them
(``onnxruntime.transformers.optimizer.optimize_model(model_type='bert')``, then
``quantize_dynamic(weight_type=QuantType.QUInt8, per_channel=False)``), validated against PyTorch
(worst-text cosine) and scored on the same articles at batch 1, the batch it is timed at. Last, one
interleaved sweep (batch 1 x seq 128, at the search's threads) of the search's winner, the best fixed
recipe that kept the accuracy and Olive's pick, with PyTorch eager; speed-ups are paired by round.

Target (issue 25): the winner at least 1.0x Olive's pick at >= 99% of PyTorch's accuracy, and the
search in under a third of Olive's 905 s search (302 s). Olive itself is not installed: its search
time is the issue's figure from a 2-core AVX2 machine, not this one's. Printed last: the CPU's flags
and load average, the search's wall time, and the winner's speed-up over Olive's pick.

    python benchmarks/optimize.py [--threads 2] [--llm]
"""

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HFMAGIC_STORE", "0")

OLIVE = "olive-fused-int8-u8-pt"  # Olive's BERT PTQ pick, as built here (int8 in the name: the int8 validation floor)
GOAL_SEARCH_S = 905 / 3    # a third of Olive's search in the issue
FIXED_ARGS = {  # the fixed recipes of the search (hfmagic.optimizing.search.FIXED), as export_onnx builds them
    "int8": {"levels": ["fp32"], "quantize": "dynamic"},
    "O2-int8": {"levels": ["O2"], "quantize": "dynamic"},
    "int8-static-minmax": {"levels": ["fp32"], "quantize": "static", "calibration_method": "minmax"},
    "fp32": {"levels": ["fp32"], "quantize": "none"},
}


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def search(threads: int):
    """The demo's search from an empty export cache: (result, wall seconds, load average before/after)."""
    from hfmagic.core.config import settings
    from hfmagic.models.handle import load_model
    from hfmagic.optimizing.api import optimize

    load_model("demo")  # built once into the cache folder (about a minute), not counted
    base = settings().cache_path
    fresh = Path(tempfile.mkdtemp(prefix="bench-optimize-", dir=base))
    shutil.copytree(base / "demo", fresh / "demo")
    settings().cache_dir = str(fresh)
    before = load()
    t0 = time.perf_counter()
    result = optimize("demo", batch_size=1, size=128, threads=threads, progress=False)
    wall = time.perf_counter() - t0
    return result, wall, before, load(), fresh


def variant_of(model, name: str, args: dict):
    """A variant the search built, from the export cache (the same key: no rebuild)."""
    from hfmagic.export.api import export_onnx

    args = {k: (None if v == "DATA" else v) for k, v in args.items()}  # the search calibrated on the model's split
    built = export_onnx(model, progress=False, **args)
    plain = "int8-static" if name.startswith("int8-static") else name
    return dataclasses.replace(built[plain], name=name)  # as the search named it (int8-static-minmax)


def olive_pick(model, folder: Path):
    """Olive's pick rebuilt with onnxruntime's tools, as an hfmagic variant (validated against PyTorch)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    from hfmagic.export.api import export_onnx
    from hfmagic.models.variants import Variant
    from hfmagic.onnx.validation import Reference, divergence

    fp32 = export_onnx(model, levels=["fp32"], quantize="none", progress=False)["fp32"]
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    optimize_model(str(fp32.path), model_type="bert").save_model_to_file(str(folder / "fused.onnx"))
    # DefaultTensorType: what onnxruntime's own error asks for on a fused graph (its shape inference cannot type
    # the contrib ops' outputs); hfmagic's dynamic int8 passes the same
    quantize_dynamic(folder / "fused.onnx", folder / "model.onnx", weight_type=QuantType.QUInt8, per_channel=False,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    seconds = time.perf_counter() - t0
    examples, source = model.task_plugin.validation.examples(model, None)
    validation = Reference(model, list(examples), source).compare(folder / "model.onnx")
    return Variant(OLIVE, model, path=folder / "model.onnx", level="fused", recipe="dynamic",
                   quantization="transformer optimizer (bert) + quantize_dynamic uint8 per-tensor",
                   size_bytes=(folder / "model.onnx").stat().st_size, build_seconds=seconds,
                   validation=validation, error=divergence(OLIVE, validation))


def demo(threads: int, min_time: float) -> None:
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.core.envcard import cpu_flags, cpu_model
    from hfmagic.evaluation.api import evaluate
    from hfmagic.models.handle import load_model
    from hfmagic.models.variants import Variant, Variants

    result, wall, before, after, fresh = search(threads)
    try:
        print(result)
        w, fixed = result.winner, result.against_fixed
        if not w:
            raise SystemExit(f"no winner: {result.outcome}")
        model = load_model("demo")
        winner = (Variant("torch", model) if w["variant"] == "torch" else  # torch.compile's weights are PyTorch's
                  variant_of(model, w["variant"], result.recipe["export_onnx"]))
        configs = {f"{w['variant']}/{w['backend']}": w["pct"]}
        chosen = [("torch", Variant("torch", model)), (w["variant"], winner)]
        if fixed:
            name = fixed["candidate"].split("/")[0]
            chosen.append((name, variant_of(model, name, FIXED_ARGS[name])))
            configs[fixed["candidate"]] = next(p["pct"] for p in result.points if p["candidate"] == fixed["candidate"])
        olive = olive_pick(model, fresh / "olive")
        print(f"{OLIVE}: worst-text cosine {olive.validation['cosine']:.4f} against PyTorch "
              f"({olive.validation['texts']} texts), {olive.error or 'validates'}")
        scored = evaluate(Variants(model, [chosen[0][1], olive]), batch_size=1, progress=False)
        row = next(r for r in scored.rows if r["variant"] == OLIVE)
        configs[f"{OLIVE}/onnxruntime"] = row["pct_of_reference"]
        print(f"{OLIVE}: {row['accuracy']:.4f} accuracy, {row['pct_of_reference']:.2f}% of PyTorch's at batch "
              f"{row['batch_size']}")
        chosen.append((OLIVE, olive))
        backends = list(dict.fromkeys(["torch"] + [c.split("/")[1] for c in configs]))
        sweep = benchmark(Variants(model, [v for _, v in dict(chosen).items()]), variants=list(dict(chosen)),
                          backends=backends, batch_sizes=[1], seq_lens=[128], threads=result.recipe["threads"],
                          min_time=min_time, baseline=f"{OLIVE}/onnxruntime", progress=False)
        print(sweep)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    rows = {f"{r['variant']}/{r['backend']}": r for r in sweep.rows if r["status"] == "ok"}
    print("\nconfiguration                             p50 ms   % of torch accuracy (batch 1)")
    for config, pct in configs.items():
        r = rows.get(config)
        print(f"{config:40s} {r['p50_ms'] if r else float('nan'):7.2f}   {pct:.2f}")
    flags = "/".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in cpu_flags())
    print(f"\n{cpu_model()} ({flags}), {os.cpu_count()} CPUs; load average {before} before the search, "
          f"{after} after it, {load()} after the sweep")
    stages = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in result.seconds.items())
    print(f"search from an empty cache: {wall:.0f} s ({stages}; goal under {GOAL_SEARCH_S:.0f} s, a third of "
          "Olive's 905 s on the issue's machine)")
    best = rows.get(f"{w['variant']}/{w['backend']}")
    if best is None or best.get("speedup") is None:
        raise SystemExit("no speed-up: the winner or Olive's pick did not run in the sweep")
    print(f"winner {w['candidate']} over Olive's pick ({OLIVE}/onnxruntime), paired by round, at "
          f"{w['pct']:.2f}% of PyTorch's accuracy (goal >= 1.0 at >= 99%): {best['speedup']:.2f}x "
          f"[{best['speedup_low']:.2f}, {best['speedup_high']:.2f}]")


def llm() -> None:
    from hfmagic.optimizing.api import optimize

    t0 = time.perf_counter()
    result = optimize("smollm2", objective="tpot", size=32, max_tokens=512, progress=False)
    print(result)
    fixed = result.against_fixed
    print(f"search took {time.perf_counter() - t0:.0f} s")
    print(f"smollm2: winner vs best fixed recipe: {fixed['ratio']:.2f}x" if fixed else "smollm2: no ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--llm", action="store_true", help="SmolLM2-135M's search instead of the demo's")
    args = parser.parse_args()
    llm() if args.llm else demo(args.threads, args.min_time)


if __name__ == "__main__":
    main()
