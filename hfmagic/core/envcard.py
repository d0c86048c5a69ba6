"""What the machine is (CPU, cores, instruction set) and the environment card recorded with each run.

The CPU helpers are cheap and import nothing heavy. :func:`environment_card` is called when a run
is recorded: it imports onnxruntime (for its providers), runs ``nvidia-smi`` when it is on the PATH
and ``git`` in the working folder, and reads torch's thread and CUDA state only when torch is
already imported.
"""

from __future__ import annotations

import functools
import os
import platform
import sys


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
         "safetensors", "huggingface-hub", "accelerate", "scikit-learn", "numpy", "pandas", "ipython",
         "anywidget"]
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in STACK:
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


@functools.lru_cache(maxsize=1)
def onnxruntime_providers() -> list[str] | None:
    """ONNX Runtime's available execution providers (imports onnxruntime: call it when recording)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.get_available_providers()


def _command(args: list[str], cwd: str | None = None) -> str | None:
    """A command's stdout, or None when it is missing, fails or takes over 10 s."""
    import shutil
    import subprocess

    if shutil.which(args[0]) is None:
        return None
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def _nvidia_smi() -> list[dict]:
    out = _command(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    gpus = []
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return gpus


def gpus() -> list[dict]:
    """The GPUs nvidia-smi lists, or torch.cuda's when torch is already imported (never imports it)."""
    found = _nvidia_smi()
    torch = sys.modules.get("torch")
    if not found and torch is not None and torch.cuda.is_available():
        found = [{"name": torch.cuda.get_device_name(i), "driver": None, "cuda": torch.version.cuda}
                 for i in range(torch.cuda.device_count())]
    return found


NOT_A_REPOSITORY = "not a git repository"


def git_state(folder: str | None = None) -> dict:
    """The commit of the repository ``folder`` (default: the working folder) is in, and whether
    its tracked files have changes since; outside a repository (or without git) ``commit`` says
    why there is none."""
    import shutil

    folder = folder or os.getcwd()
    if shutil.which("git") is None:
        return {"commit": "git is not installed", "dirty": None, "folder": None}
    top = _command(["git", "rev-parse", "--show-toplevel"], cwd=folder)
    if not top:
        return {"commit": NOT_A_REPOSITORY, "dirty": None, "folder": None}
    commit = _command(["git", "rev-parse", "HEAD"], cwd=folder)
    if not commit:
        return {"commit": "no commit yet", "dirty": None, "folder": top}
    changes = _command(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder)
    return {"commit": commit, "dirty": bool(changes), "folder": top}


def thread_settings(setting: int = 0) -> dict:
    """hfmagic's thread setting (0: one per physical core), the environment variables that set
    threads, and torch's (if loaded)."""
    out = {"setting": setting, "resolved": setting or physical_cores()}
    out.update({var: os.environ[var] for var in THREAD_VARS if var in os.environ})
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_intra_op"] = torch.get_num_threads()
        out["torch_inter_op"] = torch.get_num_interop_threads()
    return out


def memory_total_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError):
        pass
    return None


def environment_card(threads: int = 0) -> dict:
    """What a result depends on besides its inputs: Python, the stack, ONNX Runtime's providers,
    CPU, memory, threads (``threads``: hfmagic's setting), OS, GPUs and the working folder's git
    commit. Recorded with every run."""
    return {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": package_versions(),
        "onnxruntime_providers": onnxruntime_providers(),
        "cpu": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx", "sse4", "fma", "amx", "f16c", "arm"))
                            or f in ("neon", "asimd")),
        "memory_gb": memory_total_gb(),
        "threads": thread_settings(threads),
        "os": platform.platform(),
        "machine": platform.machine(),
        "gpus": gpus(),
        "git": git_state(),
        "cwd": os.getcwd(),
    }
