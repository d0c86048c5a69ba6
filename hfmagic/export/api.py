"""``export_onnx``: a model's ONNX variants, each validated against PyTorch and cached by content.

What is built (the plan): the fp32 export (always: every other variant starts from it), each
requested optimization level (O1..O4, from fp32), and with dynamic quantization (``auto``, the
default, or ``dynamic``) an int8 twin of each requested fp32/O1/O2/O3 graph: fp32 -> ``int8``,
O2 -> ``O2-int8``. O4 is fp16 and gets none. Level ``fused`` is onnxruntime's transformer optimizer
with its fusions for the model type (what Olive's transformer pass writes). Static int8 (``int8-static``, from fp32) is built
with ``quantize="static"``, or with ``auto`` when calibration data is given. The default, levels
fp32,O2 with auto, builds torch + fp32, O2, int8, O2-int8. ``quantize="nncf"`` builds
``int8-nncf`` (static int8 as QDQ, by NNCF's post-training quantization with its transformer preset,
calibrated like static int8), a file OpenVINO runs as int8.

The int8 config is read off the CPU (avx512_vnni > avx512 > avx2 > arm64), per-channel by default.
Naming ``weight_type`` (int8/uint8) or ``reduce_range`` builds the dynamic twins with those settings
instead, named by them: ``fused-int8-u8-pt`` is the fused graph with uint8 per-tensor weights.

Cache: each variant is a folder keyed by what shapes it (:mod:`hfmagic.export.cache`), built by
:class:`hfmagic.export.builder.Builder` when it is missing; ``output=`` writes ``<output>/<variant>``
folders instead, rebuilt when their key differs.
"""

from __future__ import annotations

import contextlib

from hfmagic.core.errors import BackendUnavailable, DataError, UnsupportedError, UsageProblem
from hfmagic.core.listargs import list_arguments
from hfmagic.export.builder import Builder
from hfmagic.export.cache import base_key, check_space, from_meta, read_meta, step_key, sweep_stale_temps, writable_root
from hfmagic.models.handle import load_model
from hfmagic.models.variants import TORCH, Variant, Variants
from hfmagic.onnx.build import check_exportable, check_opset, describe_quantization, int8_isa, isa_note
from hfmagic.onnx.plan import (CALIBRATION_METHODS, DEFAULT_LEVELS, INT4_BLOCK, INT4_METHODS, LEVELS,
                               QUANT_FORMATS, QUANTIZE, WEIGHT_TYPES, Dynamic, own_runtime)
from hfmagic.store.db import default_store
from hfmagic.tasks import names

DEVICES = ("cpu", "cuda")


def requests_for(names: list[str], calibration=None) -> list[dict]:
    """The ``export_onnx`` calls that build the variants ``names`` (torch needs no export): one, or
    two where a decoder's dynamic int8 (``int8``, which its ``auto`` no longer builds) is named beside
    its weight-only variants (``int8-wo``, ``int4``); :func:`export_all` makes them and merges what
    they return. ``calibration`` is used only when ``int8-static`` is named; callers check it is
    there first."""
    def level(name: str) -> str:
        if runtime := own_runtime(name):  # a text-generation model's onnxruntime-genai and llama.cpp builds
            return runtime
        if name in WEIGHT_ONLY:  # a text-generation model's, from fp32
            return "fp32"
        return name if name in LEVELS else name.removesuffix("-int8").replace("int8", "fp32")

    levels = list(dict.fromkeys(level(n) for n in names if n not in (TORCH, "int8-static", "int8-nncf")))
    dynamic = any(n.endswith("int8") and n != "int8-static" for n in names)
    static = "int8-static" in names or "int8-nncf" in names
    quantize = "auto" if dynamic else "static" if "int8-static" in names else "nncf" if static else "none"
    request = {"levels": levels or ["fp32"], "quantize": quantize, "calibration": calibration if static else None}
    gguf = {gguf_quantize(n) for n in names if own_runtime(n) == "gguf"}
    weight_only = ["int8-wo", "int4"] if "auto" in gguf else [
        n for n in ("int8-wo", "int4") if n in names or f"genai-{n}" in names or n in gguf]
    if not weight_only:
        return [request]
    only = {"quantize": "auto" if len(weight_only) == 2 else weight_only[0], "calibration": None}
    if dynamic:  # a decoder's dynamic int8 beside its weight-only variants: two calls
        return [request | {"quantize": "dynamic"}, request | only]
    return [request | only]


def kind_of(name: str) -> str:
    """What runs the variant ``name`` will be, before it is built (:attr:`Variant.kind`): ``torch``,
    a decoder's ``genai`` or ``gguf`` (onnxruntime-genai's, llama.cpp's), else ``onnx``."""
    return TORCH if name == TORCH else own_runtime(name) or "onnx"


def gguf_quantize(name: str) -> str:
    """The ``--quantize`` that builds llama.cpp's variant ``name`` beside ``--levels gguf`` (an
    ``-imatrix`` one with ``--calibration`` too): none for its F32 and a GGUF model's own file."""
    return {"gguf-q8_0": "int8-wo", "gguf-q4_k_m": "int4", "gguf-q6_k": "auto",
            "gguf-q5_k_m": "auto"}.get(name.removesuffix("-imatrix"), "none")


WEIGHT_ONLY = ("int4", "int8-wo")  # a text-generation model's weight-only variants, from fp32


def export_all(model, requests: list[dict], **options) -> Variants:
    """The variants of every ``export_onnx`` call in ``requests`` (:func:`requests_for`), as one set:
    each name once, the first call's first; the notes of all of them."""
    sets = [export_onnx(model, **request, **options) for request in requests]
    if len(sets) == 1:
        return sets[0]
    chosen: dict[str, Variant] = {}
    for one in sets:
        for variant in one:
            chosen.setdefault(variant.name, variant)
    return Variants(sets[0].model, list(chosen.values()), list(dict.fromkeys(n for one in sets for n in one.notes)))


@list_arguments(levels=(str, "level"), exclude_nodes=(str, "node"))
def export_onnx(model, levels=None, quantize="auto", per_channel=True, calibration=None, samples=100,
                opset=None, output=None, device="cpu", force=False, text_column=None,
                progress=True, block_size=INT4_BLOCK, int4_method="rtn", calibration_method="minmax",
                exclude_nodes=None, weight_type=None, reduce_range=None, quant_format=None) -> Variants:
    """Export ``model`` to ONNX variants (see the module docstring); a "torch" variant comes first.

    ``calibration``: texts for static int8 (anything :func:`hfmagic.data.tables.load_data` reads; the first
    ``samples`` rows of ``text_column``). A variant that fails to build or diverges from PyTorch
    stays in the result with its reason in ``.error``. ``progress``: show a progress bar.
    ``block_size``: int4's and int8-wo's quantization block (text-generation models); ``int4_method``: ``rtn``
    (round to nearest, symmetric, int8 compute: fast) or ``hqq`` (half-quadratic quantization:
    asymmetric, fitted to each weight without data; keeps more quality, runs slower on CPUs).
    ``calibration_method``: how static int8 sets each activation's range from the calibration
    examples (onnxruntime's calibrators through optimum's AutoCalibrationConfig): ``minmax``,
    ``entropy`` (KL divergence) or ``percentile`` (99.999th). ``exclude_nodes``: graph nodes static
    int8 leaves in float (what :func:`hfmagic.optimize`'s sensitivity pass finds).
    ``quantize="nncf"``: ``int8-nncf``, NNCF's ``nncf.quantize`` of the fp32 graph with
    ``model_type=TRANSFORMER`` on the ``samples`` calibration examples (needs ``pip install nncf``).
    ``weight_type`` (``int8`` or ``uint8``) and ``reduce_range`` (7-bit weights): dynamic int8's
    settings, through onnxruntime's ``quantize_dynamic`` (None for both: the CPU's preset, named
    ``int8``/``O2-int8``); named, the twins are ``<level>-int8-<s8|u8>-<pc|pt>[-rr]``.
    ``quant_format``: ``qoperator`` (dynamic int8's, the only one onnxruntime's dynamic quantization
    writes) or ``qdq`` (static int8's and NNCF's); None: each one's own.
    """

    model = load_model(model)
    if model.kind.RUNTIME:  # one way to run of its own (a classical baseline): nothing to export
        raise UnsupportedError(f"{model.name} is {model.kind.WHAT}: it has no ONNX export; benchmark and evaluate it "
                               "as it is")
    model.check_unchanged()  # a folder saved over since the load is refused, not mixed
    levels = check_levels(levels, model.task_plugin.export.default_levels(model), model.task_plugin.export.LEVELS)
    if quantize not in QUANTIZE:
        raise UsageProblem(f"unknown --quantize {quantize!r}; use one of: {', '.join(QUANTIZE)}")
    if not isinstance(samples, int) or samples <= 0:
        raise UsageProblem(f"--samples must be a positive number of calibration texts, got {samples!r}")
    check_device(device)
    if not isinstance(block_size, int) or block_size < 16 or block_size & (block_size - 1):
        raise UsageProblem(f"--block-size must be a power of two, 16 or more (the weight-only block of int4 and int8-wo), got {block_size!r}")
    if int4_method not in INT4_METHODS:
        raise UsageProblem(f"unknown --int4-method {int4_method!r}; use one of: {', '.join(INT4_METHODS)}")
    if calibration_method not in CALIBRATION_METHODS:
        raise UsageProblem(f"unknown --calibration-method {calibration_method!r}; use one of: "
                           f"{', '.join(CALIBRATION_METHODS)}")
    dynamic = check_dynamic(model, quantize, per_channel, weight_type, reduce_range, quant_format)
    int4 = {"block_size": block_size, "method": int4_method}
    if quantize == "nncf":
        check_nncf()
    data = calibration_data(model, quantize, calibration, samples, text_column, levels)
    task = model.task_plugin
    steps = task.export.steps(levels, quantize, static=data is not None, options={"block_size": block_size,
                                                                                  "model": model, "dynamic": dynamic})
    quantizing = any(s.quant for s in steps)

    isa = int8_isa() if quantizing else None
    root = writable_root(output)
    base = base_key(model, opset, device)
    operators = task.export.quant_operators(model)
    exclude = sorted(exclude_nodes or [])
    keys = {s.name: step_key(base, s, isa, per_channel, data, int4, operators, calibration_method, exclude, dynamic)
            for s in steps}
    places = {s.name: root / (s.name if output else keys[s.name][:24]) for s in steps}
    sweep_stale_temps(root)
    metas = {s.name: None if force else read_meta(places[s.name], keys[s.name]) for s in steps}
    to_build = [s for s in steps if metas[s.name] is None]
    notes = []
    if to_build:

        check_exportable(model, names())
        check_opset(opset)
        check_space(root, model, len(to_build))
    for fp16 in ("O4", "fp16"):
        if fp16 in levels and device == "cpu":
            notes.append(f"{fp16} is fp16 meant for GPUs: on a CPU it is usually slower than fp32 (built because "
                         "--levels asked for it)")
    if any(s.quant in ("dynamic", "static") for s in steps):
        ops = f", {'/'.join(operators)} weights only" if operators and quantize != "static" else ""
        picked = "as named" if dynamic is not None and quantize != "static" else f"picked for this CPU by --quantize {quantize}"
        notes.append(f"int8: {describe_quantization('dynamic' if quantize != 'static' else 'static', isa, per_channel, dynamic=dynamic)}"
                     f"{ops} ({picked})")
        if note := isa_note(isa):
            notes.append(note)
        if "O4" in levels and quantize in ("auto", "dynamic"):
            notes.append("O4 (fp16) gets no int8 twin")
    calibrated = [s.name for s in steps if s.calibrated]
    if data is not None and calibrated:
        static = ", ".join(calibrated)
        if quantize == "nncf":
            notes.append(f"int8-nncf: {describe_quantization('nncf', isa, per_channel)}")
        notes.append(f"{static} calibrated on {len(data)} {task.inputs.EXAMPLES} of {data.source}")
        if calibration is None:
            notes.append(f"{static} calibrated on the model's own held-out split, which %evaluate "
                         "scores by default: its accuracy there may flatter it; pass --calibration "
                         "with other texts for an unbiased figure")

    params = {"levels": levels, "quantize": quantize, "per_channel": per_channel,
              "calibration": calibration if isinstance(calibration, str) else (data.source if data else None),
              "samples": samples, "opset": opset, "output": str(output) if output else None,
              "device": device, "force": force, "text_column": text_column, "block_size": block_size,
              "int4_method": int4_method, "calibration_method": calibration_method,
              "exclude_nodes": exclude or None, "weight_type": weight_type, "reduce_range": reduce_range,
              "quant_format": quant_format}
    provenance = {"model": {"source": model.source, "path": str(model.path), "revision": model.revision,
                            "weights_sha256": model.weights_sha256, "task": model.task, "name": model.name},
                  "files": {}}
    if data is not None:
        provenance["dataset"] = data.fingerprint
    builder = Builder(model, root, places, device, opset, isa, per_channel, data, int4, calibration_method, exclude,
                      dynamic)
    items = [Variant("torch", model, size_bytes=model.weights_bytes)]

    store = default_store()
    recording = store.recording("export", params, provenance) if store else contextlib.nullcontext()
    from tqdm.auto import tqdm

    with recording as run, tqdm(total=len(to_build), desc=f"export_onnx {model.name}", unit="variant",
                                disable=not to_build or not progress, leave=False) as bar:
        built: dict[str, Variant] = {}
        for step in steps:
            if metas[step.name] is None:
                bar.set_postfix_str(step.name)
                variant = builder.build(step, keys[step.name], built)
                bar.update()
            else:
                variant = from_meta(model, step, places[step.name], metas[step.name])
            built[step.name] = variant
            if step.include:
                items.append(variant)
                if run is not None:
                    run.add_row(variant.row() | {"sha256": variant.sha256, "cached": metas[step.name] is not None})
        if not to_build:
            notes.append(f"all {len(steps)} ONNX variants came from the cache; --force rebuilds them")
        notes += validation_notes(items)
        if run is not None:
            run.update_provenance(files={v.name: v.sha256 for v in items if v.sha256})
            onnx = [v for v in items if v.kind == "onnx"]
            if onnx and not any(v.ok for v in onnx):  # the run did not give what it was for
                diverged = all(v.error.startswith("diverged") for v in onnx)
                reason = "no ONNX variant passed validation: " + "; ".join(f"{v.name} {v.error}" for v in onnx)
                run.finish("diverged" if diverged else "failed", {"notes": notes, "error": reason})
            else:
                run.finish("ok", {"notes": notes})
    return Variants(model, items, notes, run_id=run.id if run is not None else None)


def validation_notes(items: list[Variant]) -> list[str]:
    """What each variant was validated on, read off its own figures (a cached one may have been
    validated on other texts than one built now), and the divergence floors."""
    inputs: dict[str, list[str]] = {}
    for v in items:
        if v.validation:
            examples = items[0].model.task_plugin.inputs.EXAMPLES
            inputs.setdefault(f"{v.validation['texts']} {examples} ({v.validation['inputs_from']})", []).append(v.name)
    if not inputs:
        return []
    where = next(iter(inputs)) if len(inputs) == 1 else "; ".join(f"{', '.join(n)} on {t}" for t, n in inputs.items())
    return [f"validated on {where}; {items[0].model.task_plugin.validation.rule()}"]


# -- checks, done before any heavy work -------------------------------------------------------
def check_levels(levels, default=DEFAULT_LEVELS, known=LEVELS) -> list[str]:
    if levels is None:
        return list(default)
    if isinstance(levels, str):
        levels = [t.strip() for t in levels.split(",") if t.strip()]
    LEVELS = known  # noqa: N806  (the task's levels; the encoders' by default)
    by_lower = {lv.lower(): lv for lv in LEVELS}
    unknown = [lv for lv in levels if str(lv).lower() not in by_lower]
    if unknown:
        raise UnsupportedError(f"unknown level {unknown[0]!r}; choose from {', '.join(LEVELS)} "
                               "(int8 variants come from --quantize)")
    if not levels:
        raise UsageProblem(f"--levels is empty; give some of {', '.join(LEVELS)}")
    return list(dict.fromkeys(by_lower[str(lv).lower()] for lv in levels))


def check_dynamic(model, quantize: str, per_channel: bool, weight_type, reduce_range, quant_format) -> Dynamic | None:
    """Dynamic int8's named settings, or None for the CPU's preset; a value or a combination that
    cannot be built is one line."""
    if quant_format is not None and quant_format not in QUANT_FORMATS:
        raise UsageProblem(f"unknown --quant-format {quant_format!r}; use one of: {', '.join(QUANT_FORMATS)}")
    if quant_format == "qdq" and quantize in ("dynamic", "auto"):
        raise UnsupportedError("--quant-format qdq is for static int8 (--quantize static or nncf): onnxruntime's dynamic "
                               "quantization (quantize_dynamic; optimum's is_static=False) writes QOperator graphs only, "
                               "whose activations are quantized as each batch runs")
    if quant_format == "qoperator" and quantize in ("static", "nncf"):
        raise UnsupportedError(f"--quant-format qoperator is dynamic int8's; --quantize {quantize} writes QDQ "
                               "(optimum's static presets and NNCF): leave --quant-format out")
    if weight_type is None and reduce_range is None:
        return None
    if weight_type is not None and weight_type not in WEIGHT_TYPES:
        raise UsageProblem(f"unknown --weight-type {weight_type!r}; use one of: {', '.join(WEIGHT_TYPES)}")
    if reduce_range is not None and not isinstance(reduce_range, bool):
        raise UsageProblem(f"--reduce-range is on or off (True/False), got {reduce_range!r}")
    if quantize not in ("dynamic", "auto"):
        raise UsageProblem(f"--weight-type and --reduce-range set dynamic int8, which --quantize {quantize} does not "
                           "build; use --quantize dynamic (or auto)")
    if not model.task_plugin.export.DYNAMIC_OPTIONS:
        raise UnsupportedError(f"--weight-type and --reduce-range are not offered for {model.task} models: their "
                               "int8 is the CPU's preset (leave them out)")
    if weight_type is None:  # the preset's weight type (optimum's presets: uint8 on AVX2, int8 elsewhere)
        weight_type = "uint8" if int8_isa() == "avx2" else "int8"
    return Dynamic(weight_type, bool(per_channel), bool(reduce_range))


def check_nncf() -> None:
    import importlib.util

    if importlib.util.find_spec("nncf") is None:
        raise BackendUnavailable("--quantize nncf needs NNCF: pip install nncf==3.4.0 (or make install)")


def check_device(device: str) -> None:
    if device not in DEVICES:
        raise UsageProblem(f"unknown device {device!r}; use cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda needs a CUDA GPU that torch can use, and torch here "
                                     "sees none; use --device cpu")


def calibration_data(model, quantize: str, calibration, samples: int, text_column: str | None, levels=()):
    """The texts static int8 calibrates on (a decoder's: llama.cpp's importance matrix), or None when
    nothing calibrated is built."""
    if calibration is None and quantize not in ("static", "nncf"):
        return None
    if model.task_plugin.measurement.GENERATES:
        if quantize in ("static", "nncf") or "gguf" not in levels or quantize not in ("auto", "int4"):
            raise UsageProblem(f"static int8 is not built for {model.name} ({model.task}), and --calibration "
                               "calibrates llama.cpp's k-quants only: use --quantize int8-wo, int4, auto or dynamic, "
                               "with --calibration only beside --levels gguf and --quantize int4 or auto")
    elif quantize in ("none", "dynamic", "int4", "int8-wo"):
        raise UsageProblem(f"--calibration is for static int8, which --quantize {quantize} does not build; "
                           "use --quantize static (or auto) with it")
    if calibration is None:
        if model.dataset is None:
            what = ("images: pass --calibration DATA (a folder of class folders, a DataFrame or Dataset "
                    "with an image column, digits or fashion-mnist)") if model.task_plugin.inputs.EXAMPLES == "images" else \
                "texts: pass --calibration DATA (a DataFrame, a Dataset, a CSV/JSON/Parquet file or demo)"
            raise UsageProblem(f"static int8 needs calibration {what}")
        calibration = model.dataset
    try:
        return model.task_plugin.export.calibration(model, calibration, samples, text_column)
    except DataError as exc:
        raise DataError(f"calibration data: {exc}") from None
