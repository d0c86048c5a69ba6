"""What the machine is: CPU, cores, instruction set. Cheap to call, no heavy imports."""

from __future__ import annotations

import functools
import os
import platform


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo (empty off Linux)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    if info:
                        break
                    continue
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """Instruction-set flags of this CPU (``avx2``, ``avx512_vnni``, ...)."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    if platform.machine().lower() in {"arm64", "aarch64"}:
        flags.add("arm64")
    return frozenset(flags)


@functools.lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical cores available to this process (logical CPUs when that cannot be told)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 1
    info = _cpuinfo()
    try:
        siblings, cores = int(info["siblings"]), int(info["cpu cores"])
        if siblings > cores:
            return max(1, available * cores // siblings)
    except (KeyError, ValueError):
        pass
    return max(1, available)


STACK = ["hfmagic", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime",
         "onnxruntime-gpu", "openvino", "optimum-intel", "evaluate", "datasets", "tokenizers",
         "scikit-learn", "numpy", "pandas", "ipython", "anywidget"]


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in STACK:
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def environment_card() -> dict:
    """What a result depends on besides its inputs: Python, the stack, CPU, threads, OS."""
    import sys

    from hfmagic.config import settings

    return {
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "cpu": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx", "sse4", "fma", "amx", "f16c", "arm")) or f in ("neon", "asimd")),
        "threads_setting": settings().threads,
        "threads": settings().resolved_threads(),
        "os": platform.platform(),
        "machine": platform.machine(),
    }
