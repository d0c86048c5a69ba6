"""Memory: each shape's estimate against what this machine has, before anything runs; what it has
(psutil, capped by a container's cgroup and ``ulimit -v``); and naming a row that ran out of it (an
allocator's error, the OOM killer's SIGKILL)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from hfmagic.backends import get_backend
from hfmagic.core.errors import UsageProblem

# A worker's own footprint before any shape (interpreter, numpy and the runtime's libraries),
# measured as peak_mem_mb at batch 1 x seq 8 less the weights: 75-100 MB for onnxruntime, 440-485 MB
# for torch + transformers. OpenVINO is counted as onnxruntime.
RUNTIME_BYTES = {"onnx": 100e6, "torch": 500e6}
# Attention buffers live at once, per head (batch x seq x seq floats each) and for the mask (the
# same size, shared by the heads): onnxruntime's exported graph keeps the scores, their scaled and
# masked copies and the softmax, its expanded masks, and its arena grows in powers of two; torch
# one copy of the scores (eager attention keeps the scores and their softmax, SDPA's fused kernel
# none: with a mask of ones it measured 5x under this estimate) and the expanded mask.
SCORE_COPIES = {"onnx": 4.5, "torch": 1.0}
MASK_COPIES = {"onnx": 5.5, "torch": 1.0}
DECODERS = {"gpt2", "gpt_neo", "gptj", "gpt_neox", "llama", "mistral", "opt", "bloom", "falcon", "phi",
            "qwen2", "gemma", "codegen"}  # model types whose outputs carry a key/value cache


def _first(config: dict, keys: tuple[str, ...], default=None):
    for key in keys:
        if isinstance(config.get(key), int):
            return config[key]
    return default


def estimate_memory(config: dict, weights_bytes: int, batch: int, seq: int, kind: str) -> int:
    """Bytes a worker of ``kind`` ("torch" or "onnx") holds at its peak measuring one shape:

        runtime      RUNTIME_BYTES[kind]
        weights      weights_bytes (the fp32 checkpoint: an int8 file is smaller)
        activations  4 bytes x batch x seq x (hidden x (layers + 4) + 3 x intermediate)
        attention    4 bytes x batch x seq x seq x (heads x SCORE_COPIES + MASK_COPIES)[kind]
        KV cache     4 bytes x 2 x layers x batch x seq x hidden (decoders that return one)
        inputs       8 bytes x batch x seq x 3 arrays, twice (numpy and the runtime's copy)

    ``config`` is the model's config.json (BERT, DistilBERT, GPT-2 key names). Checked against the
    peak_mem_mb that workers measured here (estimate / measured): a MiniLM-L6-shaped encoder
    (hidden 384, 6 layers, 12 heads) at batch 1 x seq 8 up to 32 x 512, 1.01-1.32x on onnxruntime
    (2.7 GB estimated, 2.1 GB measured at 32 x 512) and 1.11-1.22x on torch; the tests' tiny BERT
    1.03-1.36x up to 32 x 512, but on torch 2.9x at batch 2048 x seq 256 and 5.5x at 2048 x 512,
    where SDPA's fused kernel never holds the scores (so such a shape may be refused that fits:
    ``force``). tests/unit/measure/test_memory_guard.py checks 0.75-2x at two shapes.
    """
    hidden = _first(config, ("hidden_size", "dim", "n_embd", "d_model"), 768)
    layers = _first(config, ("num_hidden_layers", "n_layers", "n_layer", "num_layers"), 12)
    heads = _first(config, ("num_attention_heads", "n_heads", "n_head"), 12)
    inner = _first(config, ("intermediate_size", "hidden_dim", "n_inner", "ffn_dim"), 4 * hidden)
    tokens = batch * seq
    floats = (tokens * (hidden * (layers + 4) + 3 * inner)
              + batch * seq * seq * (heads * SCORE_COPIES[kind] + MASK_COPIES[kind]))
    if config.get("model_type") in DECODERS and config.get("use_cache", True):
        floats += 2 * layers * tokens * hidden
    return int(RUNTIME_BYTES[kind] + weights_bytes + 4 * floats + 2 * 3 * 8 * tokens)


def available_memory() -> int:
    """Bytes this process can still take: the least of what the system has available
    (psutil.virtual_memory().available), what is left under its cgroup's memory limit (a container's)
    and, under ``ulimit -v``, what is left of its address space."""
    import resource

    import psutil

    room = [psutil.virtual_memory().available]
    limit, usage = _cgroup_value("limit"), _cgroup_value("usage")
    if limit is not None and usage is not None and limit < 1 << 60:
        room.append(max(0, limit - usage))
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        room.append(max(0, soft - psutil.Process().memory_info().vms))
    return min(room)


_CGROUP_FILES = {  # what -> (cgroup v2 file, v1 file, the line's key or None for the whole file)
    "limit": ("memory.max", "memory.limit_in_bytes", None),
    "usage": ("memory.current", "memory.usage_in_bytes", None),
    "oom_kills": ("memory.events", "memory.oom_control", "oom_kill"),
}


def _cgroup_value(what: str) -> int | None:
    """A figure of this process's memory cgroup (v2, else v1); None where it cannot be read."""
    v2, v1, key = _CGROUP_FILES[what]
    try:
        lines = open("/proc/self/cgroup").read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers in ("", "memory"):
            base, name = ("/sys/fs/cgroup", v2) if controllers == "" else ("/sys/fs/cgroup/memory", v1)
            for folder in (base + path, base):  # inside a container the mount may be its own root
                try:
                    text = open(f"{folder}/{name}").read()
                except OSError:
                    continue
                if key is None:
                    return int(text) if text.strip().isdigit() else None
                found = [ln.split()[1] for ln in text.splitlines() if ln.split()[:1] == [key]]
                return int(found[0]) if found else None
    return None


def oom_kills() -> int | None:
    """How many processes of this cgroup the out-of-memory killer has killed (None: unknown)."""
    return _cgroup_value("oom_kills")


def gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f}" if nbytes >= 1e9 else f"{nbytes / 1e9:.2f}"


# the marks of an allocation that failed: onnxruntime's arena, torch's CPU allocator, numpy and
# Python (MemoryError), C++ (std::bad_alloc), and a worker the out-of-memory killer ended
OUT_OF_MEMORY_MARKS = ("Failed to allocate memory", "can't allocate memory", "Unable to allocate",
                       "MemoryError", "bad_alloc", "killed by the out-of-memory killer")


def memory_status(status: str, batch: int, seq: int, needed: int, available: int, axis=None) -> str:
    """A row's status, named for what it is when the shape ran out of memory: "out of memory at
    batch N x seq S (needed ~X GB, had Y GB)" for a failure or crash that carries one of
    OUT_OF_MEMORY_MARKS, or a worker killed by SIGKILL at a shape estimated at half or more of the
    memory there was (the out-of-memory killer's signal, where its count cannot be read).
    Any other status is returned as it is."""
    if not status.startswith(("failed:", "crashed:")):
        return status
    if any(mark in status for mark in OUT_OF_MEMORY_MARKS) or ("SIGKILL" in status and 2 * needed >= available):
        size = axis.describe(seq) if axis is not None else f"seq {seq}"
        return f"out of memory at batch {batch} x {size} (needed ~{gb(needed)} GB, had {gb(available)} GB)"
    return status


@dataclass
class MemoryGuard:
    """Each shape's estimate for the model, against the memory this machine had before the sweep."""

    config: dict
    weights_bytes: int
    kinds: set  # the kinds measured on this machine's memory (not on a GPU's)
    available: int
    tokens: Callable[[int], int] = lambda size: size  # a shape's size as tokens (the task's rule)
    axis: Any = None  # the task's size axis (messages name it)

    def needed(self, batch: int, seq: int, kind: str | None = None) -> int:
        kinds = [kind] if kind else sorted(k for k in self.kinds if k in RUNTIME_BYTES) or ["onnx"]
        kinds = [k if k in RUNTIME_BYTES else "onnx" for k in kinds]  # onnxruntime-genai: as onnxruntime
        return max(estimate_memory(self.config, self.weights_bytes, batch, self.tokens(seq), k) for k in kinds)

    def row_status(self, status: str, batch: int, seq: int, kind: str, backend: str) -> str:
        if get_backend(backend).HARDWARE or kind not in RUNTIME_BYTES:  # the GPU's memory, or not estimated
            return status
        return memory_status(status, batch, seq, self.needed(batch, seq, kind), self.available, self.axis)


def check_memory(model, batch_sizes, seq_lens, kinds: dict[str, str], backends, force: bool):
    """Refuse, before anything runs, a sweep with a shape whose estimate exceeds the memory there
    is, unless ``force``. Returns the guard (it names out-of-memory rows) and its notes."""

    measured = set(kinds.values()) & set(RUNTIME_BYTES)  # a classical baseline is not estimated
    if backends:  # GPU providers hold their work in the GPU's memory: only the CPU backends count
        measured &= {get_backend(b).RUNS for b in backends if not get_backend(b).HARDWARE}
    guard = MemoryGuard(model.config, model.weights_bytes, measured, available_memory(),
                        partial(model.task_plugin.inputs.memory_tokens, model), model.task_plugin.inputs.AXIS)
    if not measured:
        return guard, []
    shapes = sorted(((b, s) for b in batch_sizes for s in seq_lens), key=lambda bs: (bs[0] * bs[1], bs[0]))
    over = [(b, s, guard.needed(b, s)) for b, s in shapes if guard.needed(b, s) > guard.available]
    if not over:
        return guard, []
    batch, seq, needed = over[0]
    more = f" (and {len(over) - 1} larger shape{'s' * (len(over) > 2)})" if len(over) > 1 else ""
    axis = model.task_plugin.inputs.AXIS
    what = (f"batch {batch} x {axis.describe(seq)}{more} needs ~{gb(needed)} GB of memory and {gb(guard.available)} GB "
            "is available")
    if not force:
        raise UsageProblem(f"{what}; use smaller --batch-sizes/{axis.flag}, or --force to run it anyway")
    return guard, [f"--force: {what}; such shapes may fail for memory or stall the machine"]
