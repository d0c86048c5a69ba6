"""Checking a ``benchmark()`` request and planning its jobs, before anything is measured.

Every check here runs before anything heavy (an export, a worker): names of variants, backends
and the baseline, shapes against the model's positions, counts and times, the input data. Then
the plan: one :class:`Job` per variant x backend, the baseline's first; an unavailable backend
or a variant that did not build stays in the plan as a job whose rows say why.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from hfmagic.core.errors import BackendUnavailable, UsageProblem



@dataclass
class Job:
    """One variant on one backend, and the shapes to measure (smallest first)."""

    variant: Any
    backend: str
    shapes: list[tuple[int, int]]
    blocked: str | None = None  # why it cannot run at all (unavailable backend, failed build)
    several: bool = False       # one of several models' jobs: its label names the model

    @property
    def model(self):
        return self.variant.model

    @property
    def key(self) -> tuple[str, str, str]:
        return self.variant.model.name, self.variant.name, self.backend

    @property
    def label(self) -> str:
        return "/".join(self.key) if self.several else f"{self.variant.name}/{self.backend}"


def positive(values, what: str) -> list[int]:
    values = list(values)
    if not values or any(not isinstance(v, int) or v <= 0 for v in values):
        raise UsageProblem(f"{what}s must be positive whole numbers, got {values}")
    return values


def check_number(value, what: str, minimum: float):
    if value is not None and value < minimum:
        raise UsageProblem(f"--{what} must be at least {minimum:g}, got {value}")
    return value


def check_sizes(models, asked: dict, new_tokens: int | None = None):
    """The size axis the models' task declares and each model's sizes on it: ``asked`` maps every
    axis's argument (``seq_lens``, ``image_sizes``) to what was asked (None: not given). Models of
    different axes in one sweep, an axis the models do not have, or a size a model cannot take are
    refused in one line. Returns (axis, {model name: sizes})."""
    axes = {m.task_plugin.SIZE_AXIS for m in models}
    if len(axes) > 1:
        raise UsageProblem("a benchmark compares models of one kind of input (" + ", ".join(
            sorted({f"{m.task} ({m.task_plugin.SIZE_AXIS.noun})" for m in models})) + "); run one per kind")
    axis = axes.pop()
    model = models[0]
    for argument, value in asked.items():
        if argument != axis.argument and value is not None:
            from hfmagic.tasks.base import AXES

            flag = next((a.flag for a in AXES if a.argument == argument), argument)
            raise UsageProblem(f"{flag} is not an axis of {model.name} ({model.task}); give its "
                               f"{axis.noun}s with {axis.flag}")
    given = asked.get(axis.argument)
    sizes = {}
    for m in models:
        values = positive(given if given is not None else m.task_plugin.default_sizes(m), axis.noun)
        m.task_plugin.check_sizes(m, values, new_tokens or 0)
        sizes[m.name] = values
    return axis, sizes


def check_positions(model, seq_lens: list[int], new_tokens: int = 0) -> None:
    """Every sequence length fits the model's positions (the task's rule: RoBERTa-style offsets and
    the tokenizer's model_max_length); a generation's prompt with its new tokens too."""
    limit = model.task_plugin.position_limit(model)
    if limit is None:
        return
    too_long = [s for s in seq_lens if s + new_tokens > limit]
    if too_long and new_tokens:
        raise UsageProblem(f"a prompt of {too_long[0]} tokens plus {new_tokens} new tokens is beyond {model.name}'s "
                           f"context of {limit} tokens; use --prompt-lens up to {limit - new_tokens}, or fewer "
                           "--new-tokens")
    if too_long:
        raise UsageProblem(f"sequence length {too_long[0]} is beyond {model.name}'s {limit} positions; "
                           f"use --seq-lens up to {limit}")


def check_new_tokens(models, new_tokens) -> int | None:
    """New tokens per generation: for text-generation models (default 64, at least 2: time per
    output token is measured after the first), refused for others; one kind of task per sweep."""
    generates = {bool(m.task_plugin.GENERATES) for m in models}
    if len(generates) > 1:
        raise UsageProblem("a benchmark compares text-generation models with each other, and encoders with each "
                           "other: their figures differ (time per token against latency per batch); run two")
    return models[0].task_plugin.new_tokens(new_tokens, models[0])


def check_variants(target, variants, model=None) -> list[str] | None:
    from hfmagic.models.variants import Variants

    if not variants:
        return None
    known = target.names if isinstance(target, Variants) else model.task_plugin.variant_names()
    unknown = [v for v in variants if v not in known]
    if unknown:
        raise UsageProblem(f"unknown variant {unknown[0]!r}; use one of: {', '.join(known)}")
    return list(dict.fromkeys(variants))


def check_backends(backends, kinds: dict[str, str], variants_given: bool, here: bool = True) -> None:
    """Every backend known, installed (``here``: on this machine; a cluster's workers say so from
    their nodes), and with a variant to run; every chosen variant with a backend. A GPU backend
    this machine lacks is not refused: its rows say ``unavailable:`` and why (:func:`plan`)."""
    from hfmagic.backends import get_backend

    if not backends:
        return
    classes = [get_backend(b) for b in backends]
    for cls in classes:
        ok, reason = cls.is_available() if here else (True, "")
        if not ok and not cls.HARDWARE:
            raise BackendUnavailable(reason)
        if cls.RUNS not in kinds.values():
            what, add = ("the torch variant", "torch") if cls.RUNS == "torch" else ("ONNX variants", "fp32")
            raise UsageProblem(f"backend {cls.NAME} runs {what}, and none was chosen; add {add} to --variants")
    if variants_given:
        for name, kind in kinds.items():
            if not any(cls.RUNS == kind for cls in classes):
                raise UsageProblem(f"no backend in --backends runs variant {name!r} ({kind}); add "
                                   f"{'torch' if kind == 'torch' else 'onnxruntime'} to --backends")


def check_baseline(baseline: str | None, kinds: dict[str, str], backends) -> None:
    """The baseline names a variant of this sweep, and a backend that runs it (checked before
    any export; ``kinds``: variant name -> kind, of the variants asked for or that can be built)."""
    from hfmagic.backends import get_backend

    if not baseline:
        return
    name, _, backend = baseline.partition("/")
    if name not in kinds:
        raise UsageProblem(f"baseline {baseline!r} is not in this sweep; use one of: {', '.join(kinds)}")
    if backend:
        cls = get_backend(backend)
        if cls.RUNS != kinds[name] or (backends and backend not in backends):
            raise UsageProblem(f"baseline {baseline!r} is not in this sweep: {backend} does not run "
                               f"{name} here; use {name} alone or {name}/BACKEND with a backend that runs it")


def load_inputs(model, inputs, inputs_source):
    """--inputs: real examples (texts, images, clips) as the model's task reads them, or None."""
    if inputs is None and inputs_source is None:
        return None
    return model.task_plugin.read_inputs(model, inputs if inputs is not None else inputs_source)


def export_request(model, names: list[str] | None, data) -> dict:
    """The ``export_onnx`` arguments that build the variants asked for (checked before the export)."""
    if names is None:
        return {}
    from hfmagic.export.api import request_for

    calibration = data if data is not None else model.dataset
    if "int8-static" in names and calibration is None:
        raise UsageProblem(f"int8-static needs calibration {model.task_plugin.EXAMPLES} and {model.name} has none of its own; "
                           "pass --inputs DATA (its texts calibrate it)")
    return request_for(names, calibration)


def plan(chosen, backends, shapes, here: bool = True) -> tuple[list[Job], dict[str, str], list[str]]:
    """One job per variant x backend that runs it; unavailable backends and failed builds stay as
    rows. Returns the jobs, the unavailable backends with their reasons, and notes. ``here``: the
    backends run on this machine (on a cluster's node, its worker tells what is unavailable there)."""
    from hfmagic.backends import default_backends, get_backend

    jobs, unavailable, notes = [], {}, []
    for variant in chosen:
        kind = variant.kind
        mine = default_backends(kind) if kind == "sklearn" else \
            [b for b in backends or default_backends(kind) if get_backend(b).RUNS == kind]
        if not mine:
            notes.append(f"{variant.name} not measured: no backend in --backends runs {kind} variants")
        for backend in mine:
            ok, reason = get_backend(backend).is_available() if here else (True, "")
            blocked = None
            if not ok:
                blocked = unavailable[backend] = f"unavailable: {reason}"
            if variant.error:
                blocked = (f"failed: {variant.error}" if variant.path is not None  # built, then diverged
                           else f"failed: the variant did not build: {variant.error}")
            jobs.append(Job(variant, backend, list(shapes), blocked))
    return jobs, unavailable, notes + [f"{b} {why}" for b, why in unavailable.items()]


def split_baseline(baseline: str | None, models: list) -> tuple[Any, str | None]:
    """(the model, ``VARIANT[/BACKEND]``) a baseline names: ``MODEL/VARIANT[/BACKEND]`` with several
    models, or ``VARIANT[/BACKEND]`` of the first model."""
    if not baseline:
        return models[0], None
    head, _, rest = baseline.partition("/")
    by_name = {m.name: m for m in models}
    if head in by_name and rest:
        return by_name[head], rest
    if len(models) > 1 and head in by_name:
        raise UsageProblem(f"baseline {baseline!r} names a model but no variant; use {head}/VARIANT[/BACKEND]")
    return models[0], baseline


def order_baseline_first(jobs: list[Job], baseline: str | None, model=None):
    """Put the baseline's job first (its rows are needed for every speed-up); say which it is.
    ``model``: whose variant the baseline names (default: the first job's model)."""
    if not jobs:
        return jobs, None, None
    model = model or jobs[0].model
    mine = [j for j in jobs if j.model is model]
    if baseline:
        name, _, backend = baseline.partition("/")
        found = [j for j in mine if j.variant.name == name and (not backend or j.backend == backend)]
        if not found:
            raise UsageProblem(f"baseline {baseline!r} is not in this sweep; use one of: "
                               + ", ".join(dict.fromkeys(j.label for j in jobs)))
        note = None
    else:
        found = [j for j in mine if (j.variant.name, j.backend) == ("torch", "torch")] or mine[:1] or jobs[:1]
        note = None if (found[0].variant.name, found[0].backend) == ("torch", "torch") else \
            f"speed-ups are against {found[0].label} (PyTorch eager was not in this sweep)"
    first = found[0]
    return [first] + [j for j in jobs if j is not first], first.key, note


# -- memory: each shape's estimate against what this machine has, before anything runs -----------

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
    ``force``). tests/test_memory_guard.py checks 0.75-2x at two shapes.
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
        from hfmagic.backends import get_backend

        if get_backend(backend).HARDWARE or kind not in RUNTIME_BYTES:  # the GPU's memory, or not estimated
            return status
        return memory_status(status, batch, seq, self.needed(batch, seq, kind), self.available, self.axis)


def check_memory(model, batch_sizes, seq_lens, kinds: dict[str, str], backends, force: bool):
    """Refuse, before anything runs, a sweep with a shape whose estimate exceeds the memory there
    is, unless ``force``. Returns the guard (it names out-of-memory rows) and its notes."""
    from hfmagic.backends import get_backend

    measured = set(kinds.values()) & set(RUNTIME_BYTES)  # a classical baseline is not estimated
    if backends:  # GPU providers hold their work in the GPU's memory: only the CPU backends count
        measured &= {get_backend(b).RUNS for b in backends if not get_backend(b).HARDWARE}
    guard = MemoryGuard(model.config, model.weights_bytes, measured, available_memory(),
                        partial(model.task_plugin.memory_tokens, model), model.task_plugin.SIZE_AXIS)
    if not measured:
        return guard, []
    shapes = sorted(((b, s) for b in batch_sizes for s in seq_lens), key=lambda bs: (bs[0] * bs[1], bs[0]))
    over = [(b, s, guard.needed(b, s)) for b, s in shapes if guard.needed(b, s) > guard.available]
    if not over:
        return guard, []
    batch, seq, needed = over[0]
    more = f" (and {len(over) - 1} larger shape{'s' * (len(over) > 2)})" if len(over) > 1 else ""
    axis = model.task_plugin.SIZE_AXIS
    what = (f"batch {batch} x {axis.describe(seq)}{more} needs ~{gb(needed)} GB of memory and {gb(guard.available)} GB "
            "is available")
    if not force:
        raise UsageProblem(f"{what}; use smaller --batch-sizes/{axis.flag}, or --force to run it anyway")
    return guard, [f"--force: {what}; such shapes may fail for memory or stall the machine"]
