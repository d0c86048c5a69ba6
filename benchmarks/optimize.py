"""%optimize against the fixed recipes, on the demo classifier (and SmolLM2 with --llm).

The winner's p50 (SmolLM2: TPOT) against the best fixed recipe that keeps >= 99% of the
reference's accuracy (``--quantize auto``'s int8, O2-int8, static int8 with min-max, OpenVINO on
fp32), all measured in the search's one confirming interleaved sweep. Prints the ratio last (goal
>= 1.0; above it where static int8 with nodes left in float, or another backend, wins).

    python benchmarks/optimize.py [--llm]
"""

import os
import sys
import time

os.environ.setdefault("HFMAGIC_STORE", "0")


def one(source: str, **kwargs) -> float | None:
    from hfmagic.optimizing.api import optimize

    t0 = time.perf_counter()
    result = optimize(source, progress=False, **kwargs)
    print(result)
    print(f"search took {time.perf_counter() - t0:.0f} s")
    w, fixed = result.winner, result.against_fixed
    if not w or not fixed:
        print("no ratio: no winner, or no fixed recipe kept the accuracy")
        return None
    print(f"{source}: winner {w['candidate']} {w['objective']:.3f} against the best fixed recipe "
          f"{fixed['candidate']} {fixed['objective']:.3f}: {fixed['ratio']:.2f}x")
    return fixed["ratio"]


def main() -> None:
    from hfmagic.core.envcard import cpu_flags, cpu_model

    flags = "/".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in cpu_flags())
    print(f"{cpu_model()} ({flags}), {os.cpu_count()} CPUs")
    ratios = {"demo": one("demo", batch_size=1, size=128)}
    if "--llm" in sys.argv:
        ratios["smollm2"] = one("smollm2", objective="tpot", size=32, max_tokens=512)
    print("winner vs best fixed recipe: " + ", ".join(f"{k} {v:.2f}x" if v else f"{k} -" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
