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
