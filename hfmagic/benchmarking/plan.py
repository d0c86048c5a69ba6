"""Checking a ``benchmark()`` request and planning its jobs, before anything is measured.

Every check here runs before anything heavy (an export, a worker): names of variants, backends
and the baseline, shapes against the model's positions, counts and times, the input data. Then
the plan: one :class:`Job` per variant x backend, the baseline's first; an unavailable backend
or a variant that did not build stays in the plan as a job whose rows say why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hfmagic.backends import default_backends, get_backend
from hfmagic.core.errors import BackendUnavailable, UsageProblem
from hfmagic.core.shapes import AXES
from hfmagic.export.api import requests_for
from hfmagic.models.variants import Variants
from hfmagic.onnx.plan import parse_dynamic_name


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
    axes = {m.task_plugin.inputs.AXIS for m in models}
    if len(axes) > 1:
        raise UsageProblem("a benchmark compares models of one kind of input (" + ", ".join(
            sorted({f"{m.task} ({m.task_plugin.inputs.AXIS.noun})" for m in models})) + "); run one per kind")
    axis = axes.pop()
    model = models[0]
    for argument, value in asked.items():
        if argument != axis.argument and value is not None:
            flag = next((a.flag for a in AXES if a.argument == argument), argument)
            raise UsageProblem(f"{flag} is not an axis of {model.name} ({model.task}); give its "
                               f"{axis.noun}s with {axis.flag}")
    given = asked.get(axis.argument)
    sizes = {}
    for m in models:
        values = positive(given if given is not None else m.task_plugin.inputs.sizes(m), axis.noun)
        m.task_plugin.inputs.check_sizes(m, values, new_tokens or 0)
        sizes[m.name] = values
    return axis, sizes


def check_new_tokens(models, new_tokens: list[int] | None) -> list[int | None]:
    """New tokens per generation, each value asked for, smallest first: for text-generation models
    (default 64, at least 2: time per output token is measured after the first), refused for
    others (``[None]``); one kind of task per sweep."""
    generates = {bool(m.task_plugin.measurement.GENERATES) for m in models}
    if len(generates) > 1:
        raise UsageProblem("a benchmark compares text-generation models with each other, and encoders with each "
                           "other: their figures differ (time per token against latency per batch); run two")
    measurement, model = models[0].task_plugin.measurement, models[0]
    if new_tokens == []:
        raise UsageProblem("--new-tokens needs at least one count, e.g. 16,64")
    values = [measurement.new_tokens(n, model) for n in (new_tokens if isinstance(new_tokens, list) else [new_tokens])]
    return sorted(set(values)) if values != [None] else values


def check_variants(target, variants, model=None) -> list[str] | None:
    if not variants:
        return None
    known = target.names if isinstance(target, Variants) else model.task_plugin.export.variant_names(model)
    unknown = [v for v in variants if v not in known]
    if unknown and not isinstance(target, Variants) and (named := parse_dynamic_name(unknown[0])):
        level, dynamic = named  # a named dynamic int8 setting: one export builds it, then benchmark that
        flags = (f"--levels {level} --quantize dynamic --weight-type {dynamic.weight_type}"
                 + ("" if dynamic.per_channel else " --no-per-channel") + (" --reduce-range" if dynamic.reduce_range else ""))
        raise UsageProblem(f"{unknown[0]} is dynamic int8 with settings of its own: build it first with "
                           f"%export_onnx MODEL {flags} --name v (the same options in Python's export_onnx), "
                           "then benchmark v")
    if unknown:
        raise UsageProblem(f"unknown variant {unknown[0]!r}; use one of: {', '.join(known)}")
    return list(dict.fromkeys(variants))


def check_backends(backends, kinds: dict[str, str], variants_given: bool, here: bool = True) -> None:
    """Every backend known, installed (``here``: on this machine; a cluster's workers say so from
    their nodes), and with a variant to run; every chosen variant with a backend. A GPU backend
    this machine lacks is not refused: its rows say ``unavailable:`` and why (:func:`plan`)."""

    if not backends:
        return
    classes = [get_backend(b) for b in backends]
    for cls in classes:
        ok, reason = cls.is_available() if here else (True, "")
        if not ok and not cls.HARDWARE:
            raise BackendUnavailable(reason)
        if cls.RUNS not in kinds.values():
            what, add = cls.RUNS_WHAT or (f"{cls.RUNS} variants", "one of them")
            raise UsageProblem(f"backend {cls.NAME} runs {what}, and none was chosen; add {add} to --variants")
    if variants_given:
        for name, kind in kinds.items():
            if not any(cls.RUNS == kind for cls in classes):
                runners = default_backends(kind) or ["a backend that runs it"]
                raise UsageProblem(f"no backend in --backends runs variant {name!r} ({kind}); add {runners[0]} to "
                                   "--backends")


def check_baseline(baseline: str | None, kinds: dict[str, str], backends) -> None:
    """The baseline names a variant of this sweep, and a backend that runs it (checked before
    any export; ``kinds``: variant name -> kind, of the variants asked for or that can be built)."""

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
    return model.task_plugin.inputs.read(model, inputs if inputs is not None else inputs_source)


def export_request(model, names: list[str] | None, data) -> list[dict]:
    """The ``export_onnx`` calls that build the variants asked for (checked before the export)."""
    if names is None:
        return [{}]

    calibration = data if data is not None else model.dataset
    if "int8-static" in names and calibration is None:
        raise UsageProblem(f"int8-static needs calibration {model.task_plugin.inputs.EXAMPLES} and {model.name} has none of its own; "
                           "pass --inputs DATA (its texts calibrate it)")
    return requests_for(names, calibration)


def plan(chosen, backends, shapes, here: bool = True) -> tuple[list[Job], dict[str, str], list[str]]:
    """One job per variant x backend that runs it; unavailable backends and failed builds stay as
    rows. Returns the jobs, the unavailable backends with their reasons, and notes. ``here``: the
    backends run on this machine (on a cluster's node, its worker tells what is unavailable there)."""

    jobs, unavailable, notes = [], {}, []
    for variant in chosen:
        kind = variant.kind
        own = kind == variant.model.kind.RUNTIME  # a model with one way to run: its own backends, whatever --backends says
        mine = default_backends(kind) if own else [b for b in backends or default_backends(kind)
                                                   if get_backend(b).RUNS == kind
                                                   and (variant.runs_on is None or b in variant.runs_on)]
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
            most = get_backend(backend).MAX_BATCH
            fits = [s for s in shapes if most is None or s[0] <= most]
            if fits:
                jobs.append(Job(variant, backend, fits, blocked))
            if len(fits) < len(shapes):  # rows that say why, not a worker that fails at each
                jobs.append(Job(variant, backend, [s for s in shapes if s not in fits],
                                f"unsupported: {backend} runs batch {most} at most here; use --batch-sizes {most}"))
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
