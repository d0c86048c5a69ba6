"""What ``optimize()`` builds: every recipe through the export cache, the sensitivity pass that leaves
a diverging static int8's costliest operators in float, and the smallest ``export_onnx`` call that
rebuilds the winner.

Each function takes the :class:`hfmagic.optimizing.search.Search` it works for: it adds to the
search's variants, recipes and trace.
"""

from __future__ import annotations

import importlib.util

from hfmagic.core.envcard import cpu_flags
from hfmagic.core.errors import BuildError, UsageProblem
from hfmagic.export.api import export_onnx, gguf_quantize
from hfmagic.onnx.build import int8_isa, quantizable_nodes
from hfmagic.optimizing.space import LEVEL_ORDER, build_dynamic

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def build_recipes(search) -> None:
    """Build every recipe through the export cache into ``search.variants`` (with the arguments of
    each in ``search.recipes``); a recipe the task or model does not take is traced, not raised."""

    task = search.model.task_plugin
    recipes = []
    if task.export.DYNAMIC_OPTIONS:  # every level x dynamic int8's settings, pruned (hfmagic.optimizing.space)
        build_dynamic(search, [lv for lv in LEVEL_ORDER if lv in task.export.LEVELS])
    else:  # a task whose int8 is the CPU's preset: per-channel on its levels, per-tensor on fp32
        levels = [lv for lv in ("fp32", "O1", "O2") if lv in task.export.LEVELS]
        recipes = [({"levels": levels, "quantize": "dynamic", "per_channel": True}, {}),
                   ({"levels": ["fp32"], "quantize": "dynamic", "per_channel": False}, {"int8": "int8-per-tensor"})]
    calibration = search.calibration if search.calibration is not None else search.data
    if (calibration is not None or search.model.dataset is not None) and not task.measurement.GENERATES:
        if search.calibration is None and search.data is not None:
            search.notes.append(f"static int8 was calibrated on the first {search.samples} examples of the data the "
                                "gate scores: its accuracy there may flatter it (pass calibration= other examples)")
        for method in CALIBRATION_METHODS:
            recipes.append(({"levels": ["fp32"], "quantize": "static", "calibration": calibration,
                             "samples": search.samples, "calibration_method": method},
                            {"int8-static": f"int8-static-{method}"}))
        if importlib.util.find_spec("nncf") is not None:
            recipes.append(({"levels": ["fp32"], "quantize": "nncf", "calibration": calibration,
                             "samples": search.samples}, {}))
        else:
            search.step("int8-nncf", "build", "dropped", reason="not tried: NNCF is not installed "
                                                                "(pip install nncf==3.4.0)")
    if task.measurement.GENERATES:  # a decoder's weight-only int8 and int4 (RTN: fast; HQQ: keeps more), and onnxruntime-genai's
        recipes.append(({"levels": ["fp32"], "quantize": "int8-wo"}, {}))
        recipes.append(({"levels": ["fp32"], "quantize": "int4"}, {}))
        for method in ("hqq", "kquant"):
            recipes.append(({"levels": ["fp32"], "quantize": "int4", "int4_method": method}, {"int4": f"int4-{method}"}))
        if "genai" in task.export.default_levels(search.model):
            recipes.append(({"levels": ["genai"], "quantize": "int8-wo"}, {}))
            recipes.append(({"levels": ["genai"], "quantize": "int4"}, {}))
            for method in ("hqq", "kquant"):
                recipes.append(({"levels": ["genai"], "quantize": "int4", "int4_method": method},
                                {"genai-int4": f"genai-int4-{method}"}))
        else:
            search.step("genai-fp32/genai-int4", "build", "dropped", reason="not tried: onnxruntime-genai is not "
                        "installed (pip install --no-deps onnxruntime-genai==0.11.2)")
        if "gguf" in task.export.default_levels(search.model):  # llama.cpp's F32, its quantizer's types, the file
            recipes.append(({"levels": ["gguf"], "quantize": "auto"}, {}))
            if calibration is not None:  # and its k-quants weighed by an importance matrix from the texts
                recipes.append(({"levels": ["gguf"], "quantize": "auto", "calibration": calibration,
                                 "samples": search.samples}, {}))
                if search.calibration is None:
                    search.notes.append("llama.cpp's importance matrix came from the data the gate scores: its "
                                        "perplexity there may flatter it (pass calibration= other texts)")
        else:
            search.step("gguf-*", "build", "dropped", reason="not tried: llama.cpp is not installed (make llama) or "
                        "does not take this architecture from its weights")
    search.step("fp16/bf16", "build", "dropped", reason=reduced_precision_note())
    for args, renames in recipes:
        if search.out_of_time("building every recipe"):
            return
        try:
            built = export_onnx(search.model, progress=search.progress, **args)
        except (UsageProblem, BuildError) as exc:  # a recipe this task or model does not take
            label = "/".join(renames.values()) or f"{args['quantize']} {', '.join(args['levels'])}"
            search.step(label, "build", "dropped", reason=f"not built: {exc}")
            continue
        for v in built:
            name = renames.get(v.name, v.name)
            if name in search.variants or (args.get("quantize") in ("static", "nncf")
                                           and v.name not in ("int8-static", "int8-nncf")):
                continue
            if args.get("per_channel") is False and v.name != "int8":
                continue
            v = _renamed(v, name)
            search.variants[name] = v
            search.recipes[name] = {k: val for k, val in args.items() if k != "calibration"} | (
                {"calibration": "DATA"} if "calibration" in args else {})
            if v.error:
                search.step(name, "build", "dropped", reason=v.error)
    sensitivity(search, calibration)


def sensitivity(search, calibration) -> None:
    """Static int8 that diverged: find the operator types whose quantization costs the most
    (each one left in float in turn, the worst-example cosine against PyTorch measured), then
    leave the worst ones in float, one more at a time, until the variant validates."""

    failed = [n for n, v in search.variants.items() if n.startswith("int8-static-") and v.error and v.path]
    fp32 = search.variants.get("fp32")
    if not failed or fp32 is None or fp32.path is None:
        return
    name = max(failed, key=lambda n: search.variants[n].validation.get("cosine") or -1)  # the closest to passing
    method = name.removeprefix("int8-static-")
    base = search.variants[name].validation.get("cosine") or -1
    groups = quantizable_nodes(fp32.path, int8_isa())
    args = {"levels": ["fp32"], "quantize": "static", "calibration": calibration, "samples": search.samples,
            "calibration_method": method}

    def build(exclude: list[str]):
        return export_onnx(search.model, progress=search.progress, exclude_nodes=exclude, **args)["int8-static"]

    scores = {}
    for op, nodes in groups.items():
        if search.out_of_time("the sensitivity pass"):
            return
        probe = build(nodes)
        scores[op] = probe.validation.get("cosine") or -1
        search.step(f"{name} without {op}", "sensitivity", "probed", reason=(
            f"{len(nodes)} {op} nodes left in float: worst-example cosine {scores[op]:.4f} (all quantized: "
            f"{base:.4f})"))
    exclude: list[str] = []
    for op in sorted(scores, key=scores.get, reverse=True)[:max(1, len(scores) // 2)]:
        if search.out_of_time("the sensitivity pass"):
            return
        exclude += groups[op]
        variant = build(exclude)
        kept = sorted({o for o, ns in groups.items() if set(ns) <= set(exclude)})
        label = f"{name}-float-{'-'.join(o.lower() for o in kept)}"
        if variant.error:
            search.step(label, "sensitivity", "dropped", reason=variant.error)
            continue
        search.variants[label] = _renamed(variant, label)
        search.recipes[label] = {**{k: v for k, v in args.items() if k != "calibration"}, "calibration": "DATA",
                                 "exclude_nodes": sorted(exclude)}
        search.step(label, "sensitivity", "kept", reason=(
            f"validates with {', '.join(kept)} left in float ({len(exclude)} nodes): worst-example cosine "
            f"{variant.validation.get('cosine', float('nan')):.4f}"))
        return


def rebuild_recipe(search, winner: dict) -> dict:
    """The smallest export_onnx call that builds the winner (the same cache key, so the same file)."""
    name = winner["variant"]
    variant = search.variants[name]
    args = dict(search.recipes.get(name, {}))
    level = variant.level or "fp32"
    if variant.kind == "genai" and not variant.quantization:  # onnxruntime-genai's fp32 build alone
        args = {"levels": ["genai"], "quantize": "none"}
    if variant.kind == "gguf":  # llama.cpp's: the --quantize that builds its type (the F32 and the file: none)
        args = {"levels": ["gguf"], "quantize": gguf_quantize(name)} | (
            {k: args[k] for k in ("calibration", "samples") if k in args} if variant.recipe.endswith("-imatrix") else {})
    if variant.kind == "onnx":
        quantize = args.get("quantize", "none") if variant.quantization else "none"
        args = {"levels": [level], "quantize": quantize} | (
            {"per_channel": args.get("per_channel", True)} if quantize == "dynamic" else {}) | (
            {k: args[k] for k in ("weight_type", "reduce_range") if k in args} if quantize == "dynamic" else {}) | (
            {k: args[k] for k in ("calibration", "samples", "calibration_method", "exclude_nodes") if k in args}
            if quantize in ("static", "nncf") else {}) | (
            {"int4_method": args["int4_method"]} if quantize == "int4" and "int4_method" in args else {})

    def shown(k, v):
        if k == "calibration":
            return "calibration=DATA"
        if k == "exclude_nodes":  # the names are in .recipe["export_onnx"]["exclude_nodes"]
            return f"exclude_nodes=NODES  # the {len(v)} names in .recipe['export_onnx']['exclude_nodes']\n    "
        return f"{k}={v!r}"

    if variant.kind == "torch":  # torch.compile of the model itself: nothing to export
        python = (f"torch.set_num_threads({search.threads}); model = torch.compile("
                  f"hfmagic.load_model({search.model.source!r}).torch_model())")
    else:
        python = (f"hfmagic.export_onnx({search.model.source!r}, " + ", ".join(shown(k, v) for k, v in args.items())
                  + f")  # then {_plain(name)!r} on {winner['backend']} at {search.threads} threads")
    return {"variant": name, "backend": winner["backend"], "export_onnx": args, "python": python,
            "cli": variant.cli_command, "sha256": variant.sha256, "path": str(variant.path) if variant.path else None,
            "threads": search.threads}


def reduced_precision_note() -> str:
    """Why fp16 and bf16 are not among the candidates on this machine, in the trace (never skipped
    silently)."""
    import torch

    flags = cpu_flags()
    have = [f for f in ("avx512_fp16", "avx512_bf16", "amx_bf16", "amx_fp16") if f in flags]
    if not have and not torch.cuda.is_available():
        return ("not tried: this CPU has no fp16 or bf16 arithmetic (no avx512_fp16, avx512_bf16 or AMX) and torch "
                "sees no CUDA GPU, so both would run as slower emulations of fp32")
    return (f"not tried: {', '.join(have) or 'a CUDA GPU'} is here, but the search times the CPU backends at fp32 "
            "precision (OpenVINO's hint is f32): export O4 with --device cuda, or pass OpenVINO a bf16 hint, by hand")


def _plain(name: str) -> str:
    """The name export_onnx gives the variant (the search renames some apart)."""
    if name.startswith("int8-static-"):  # a calibration method, maybe nodes left in float
        return "int8-static"
    for method in ("hqq", "kquant"):  # int4 by HQQ, by llama.cpp's k-quant mix
        if name.endswith(f"-int4-{method}") or name == f"int4-{method}":
            return name.removesuffix(f"-{method}")
    return "int8" if name == "int8-per-tensor" else name


def _renamed(variant, name: str):
    import dataclasses

    return variant if variant.name == name else dataclasses.replace(variant, name=name)
