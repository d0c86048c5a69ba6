"""Re-running ``%export_onnx demo`` returns from the cache: cold build vs cached, side by side.

The issue's target: the cached call returns in under 0.5 s for MiniLM (the demo model) without
rebuilding. Both calls go through a real IPython shell, as a re-run notebook cell does; the cold
one is forced to rebuild (--force). Prints the two times, their ratio, and the cached time last.

    HFMAGIC_CACHE_DIR=... python benchmarks/export_cache.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="cached calls to time (median reported)")
    args = parser.parse_args()

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "hfmagic")
    shell.run_line_magic("load_model", "demo -q")  # builds the demo model once, outside the timing

    start = time.perf_counter()
    cold = shell.run_line_magic("export_onnx", "demo --force -o -q")
    cold_s = time.perf_counter() - start
    built = {v.name: v.sha256 for v in cold}

    cached = []
    for _ in range(args.repeats):
        wall, start = time.time(), time.perf_counter()
        again = shell.run_line_magic("export_onnx", "demo -o -q")
        cached.append(time.perf_counter() - start)
        assert {v.name: v.sha256 for v in again} == built, "the cached call returned different files"
        assert all(v.path is None or v.path.stat().st_mtime < wall for v in again), "it rebuilt"

    print(cold)
    cached_s = statistics.median(cached)
    print(f"variants: {', '.join(built)}")
    print(f"cold build (--force): {cold_s:.2f} s")
    print(f"cached: median {cached_s:.3f} s of {args.repeats} (min {min(cached):.3f}, max {max(cached):.3f})")
    print(f"cached / cold: {cached_s / cold_s:.4f}")
    print(f"cached export_onnx demo: {cached_s:.3f} s")


if __name__ == "__main__":
    main()
