"""Checking a ``benchmark()`` request and planning its jobs, before anything is measured.

Every check here runs before anything heavy (an export, a worker): names of variants, backends
and the baseline, shapes against the model's positions, counts and times, the input data. Then
the plan: one :class:`Job` per variant x backend, the baseline's first; an unavailable backend
or a variant that did not build stays in the plan as a job whose rows say why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hfmagic.errors import BackendUnavailable, UsageProblem

# models whose position ids start after the padding index (max_position_embeddings - pad - 1 usable)
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text"}


@dataclass
class Job:
    """One variant on one backend, and the shapes to measure (smallest first)."""

    variant: Any
    backend: str
    shapes: list[tuple[int, int]]
    blocked: str | None = None  # why it cannot run at all (unavailable backend, failed build)

    @property
    def label(self) -> str:
        return f"{self.variant.name}/{self.backend}"


def positive(values, what: str) -> list[int]:
    values = list(values)
    if not values or any(not isinstance(v, int) or v <= 0 for v in values):
        raise UsageProblem(f"{what}s must be positive whole numbers, got {values}")
    return values


def check_number(value, what: str, minimum: float):
    if value is not None and value < minimum:
        raise UsageProblem(f"--{what} must be at least {minimum:g}, got {value}")
    return value


def check_positions(model, seq_lens: list[int]) -> None:
    limit = model.max_positions
    if limit is None:
        return
    if model.model_type in _OFFSET_POSITIONS:
        limit -= (model.config.get("pad_token_id") or 0) + 1
    too_long = [s for s in seq_lens if s > limit]
    if too_long:
        raise UsageProblem(f"sequence length {too_long[0]} is beyond {model.name}'s {limit} positions; "
                           f"use --seq-lens up to {limit}")


def check_variants(target, variants) -> list[str] | None:
    from hfmagic.variants import Variants

    if not variants:
        return None
    from hfmagic.export import VARIANT_NAMES

    known = target.names if isinstance(target, Variants) else VARIANT_NAMES
    unknown = [v for v in variants if v not in known]
    if unknown:
        raise UsageProblem(f"unknown variant {unknown[0]!r}; use one of: {', '.join(known)}")
    return list(dict.fromkeys(variants))


def check_backends(backends, kinds: dict[str, str], variants_given: bool) -> None:
    """Every backend known, installed, and with a variant to run; every chosen variant with a backend."""
    from hfmagic.backends import get_backend

    if not backends:
        return
    classes = [get_backend(b) for b in backends]
    unavailable = []
    for cls in classes:
        ok, reason = cls.is_available()
        if not ok and not cls.HARDWARE:
            raise BackendUnavailable(reason)
        if not ok:
            unavailable.append(reason)
        if cls.RUNS not in kinds.values():
            what, add = ("the torch variant", "torch") if cls.RUNS == "torch" else ("ONNX variants", "fp32")
            raise UsageProblem(f"backend {cls.NAME} runs {what}, and none was chosen; add {add} to --variants")
    if variants_given:
        for name, kind in kinds.items():
            if not any(cls.RUNS == kind for cls in classes):
                raise UsageProblem(f"no backend in --backends runs variant {name!r} ({kind}); add "
                                   f"{'torch' if kind == 'torch' else 'onnxruntime'} to --backends")
    if len(unavailable) == len(classes):
        raise BackendUnavailable(unavailable[0])


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


def load_inputs(inputs, inputs_source):
    if inputs is None and inputs_source is None:
        return None
    from hfmagic.data import load_data

    return load_data(inputs if inputs is not None else inputs_source, require_labels=False)


def export_request(model, names: list[str] | None, data) -> dict:
    """The ``export_onnx`` arguments that build the variants asked for (checked before the export)."""
    if names is None:
        return {}
    from hfmagic.export import request_for

    calibration = data if data is not None else model.dataset
    if "int8-static" in names and calibration is None:
        raise UsageProblem(f"int8-static needs calibration texts and {model.name} has none of its own; "
                           "pass --inputs DATA (its texts calibrate it)")
    return request_for(names, calibration)


def plan(chosen, backends, shapes) -> tuple[list[Job], dict[str, str], list[str]]:
    """One job per variant x backend that runs it; unavailable backends and failed builds stay as
    rows. Returns the jobs, the unavailable backends with their reasons, and notes."""
    from hfmagic.backends import default_backends, get_backend

    jobs, unavailable, notes = [], {}, []
    for variant in chosen:
        kind = variant.kind
        mine = [b for b in backends or default_backends(kind) if get_backend(b).RUNS == kind]
        if not mine:
            notes.append(f"{variant.name} not measured: no backend in --backends runs {kind} variants")
        for backend in mine:
            ok, reason = get_backend(backend).is_available()
            blocked = None
            if not ok:
                blocked = unavailable[backend] = f"unavailable: {reason}"
            if variant.error:
                blocked = (f"failed: {variant.error}" if variant.path is not None  # built, then diverged
                           else f"failed: the variant did not build: {variant.error}")
            jobs.append(Job(variant, backend, list(shapes), blocked))
    return jobs, unavailable, notes + [f"{b} {why}" for b, why in unavailable.items()]


def order_baseline_first(jobs: list[Job], baseline: str | None):
    """Put the baseline's job first (its rows are needed for every speed-up); say which it is."""
    if not jobs:
        return jobs, None, None
    if baseline:
        name, _, backend = baseline.partition("/")
        found = [j for j in jobs if j.variant.name == name and (not backend or j.backend == backend)]
        if not found:
            raise UsageProblem(f"baseline {baseline!r} is not in this sweep; use one of: "
                               + ", ".join(dict.fromkeys(j.label for j in jobs)))
        note = None
    else:
        found = [j for j in jobs if (j.variant.name, j.backend) == ("torch", "torch")] or jobs[:1]
        note = None if found[0].label == "torch/torch" else \
            f"speed-ups are against {found[0].label} (PyTorch eager was not in this sweep)"
    first = found[0]
    return [first] + [j for j in jobs if j is not first], (first.variant.name, first.backend), note
