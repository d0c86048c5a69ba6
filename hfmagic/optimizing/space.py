"""The dynamic int8 recipes ``optimize()`` builds: every level x the settings onnxruntime's dynamic
quantization takes, pruned so the builds do not grow with the product of the options.

The space: the levels the task offers (fp32, O1, O2, O3 and ``fused``, onnxruntime's transformer
optimizer) x weight type (int8, uint8) x per-channel or per-tensor x reduce_range off or on x
format (QOperator, QDQ). What is built, in order:

1. Each level's graph and its int8 twin at this CPU's preset (``int8``, ``O2-int8``, ``fused-int8``):
   two builds per level.
2. QDQ is asked once, on the first level: onnxruntime's dynamic quantization writes QOperator graphs
   only, so the request is refused and one trace line says so for every level.
3. The twins are screened (a short interleaved sweep on onnxruntime) and the ``KEEP_LEVELS`` fastest
   levels get every named setting (``fused-int8-u8-pt`` ...). Which level is fastest once quantized
   depends on the graph's structure (a fused graph's attention becomes one QAttention), which the
   preset shows as well as any setting; the settings choose the kernels and the accuracy within a
   level. The other levels' settings are left out, one trace line per level with its screened time.
4. A setting whose build fails on one level is not tried on the next: one trace line names the
   level it failed on, the reason and the levels it was not tried on. (A variant that builds but
   diverges from PyTorch is dropped on its own: divergence is the variant's, not the setting's.)

The named settings are screened on onnxruntime only (:func:`onnxruntime_only`): each level's preset
is screened on OpenVINO too, and it is the same graph with other weights, so it shows what OpenVINO
makes of the level (on a BERT, it cannot read O2's and the fused level's ``QAttention`` at all).

On the demo classifier that is 5 levels x 2 + 2 x 7 = 24 builds on a VNNI CPU (whose preset, int8
per-channel, is one of the settings: not built twice) and 26 on AVX2, where the product is 5 + 5 x 16 = 85.
"""

from __future__ import annotations

from hfmagic.backends import get_backend
from hfmagic.core.errors import BuildError, UsageProblem
from hfmagic.export.api import export_onnx
from hfmagic.onnx.build import int8_isa
from hfmagic.onnx.plan import WEIGHT_TYPES, Dynamic, dynamic_name

LEVEL_ORDER = ("fp32", "O1", "O2", "O3", "fused")  # O4 is fp16 (the fp16/bf16 line says why it is left out)
KEEP_LEVELS = 2       # levels that get every setting after the screen
SCREEN_TIME = 0.2     # seconds of timing per twin in the level screen
# every named setting, the preset's kin first: weight type x per-channel x reduce_range
SETTINGS = tuple(Dynamic(w, pc, rr) for w in WEIGHT_TYPES for pc in (True, False) for rr in (False, True))
EVERY_SETTING = "int8-{s8,u8}-{pc,pt}{,-rr}"  # the settings of one level, as the trace names them
BUILD_FAILED = ("build failed", "built, but onnxruntime could not run it")


def build_dynamic(search, levels: list[str]) -> None:
    """The dynamic int8 recipes of ``levels`` into ``search.variants`` (the module docstring says
    which and why)."""
    twins = _level_twins(search, levels)
    if search.out_of_time("screening the levels' int8"):
        return
    _qdq_once(search, levels)
    kept = _screen_levels(search, twins)
    preset = "uint8" if int8_isa() == "avx2" else "int8"
    failed: dict[Dynamic, tuple[str, str]] = {}  # setting -> (level it failed on, why)
    skipped: dict[Dynamic, list[str]] = {}
    for setting in SETTINGS:
        for level in kept:
            if setting in failed:
                skipped.setdefault(setting, []).append(level)
                continue
            name = dynamic_name(level, setting)
            if setting == Dynamic("int8", True, False) and preset == "int8":
                search.step(name, "build", "dropped", reason=f"the same settings as {dynamic_name(level, None)} (this "
                            "CPU's preset, int8 symmetric per-channel weights): not built twice")
                continue
            if search.out_of_time("building every setting"):
                return
            args = {"levels": [level], "quantize": "dynamic", "weight_type": setting.weight_type,
                    "per_channel": setting.per_channel, "reduce_range": setting.reduce_range}
            try:
                variant = export_onnx(search.model, progress=search.progress, **args)[name]
            except (UsageProblem, BuildError) as exc:
                failed[setting] = (level, str(exc))
                continue
            if variant.error and variant.error.startswith(BUILD_FAILED):
                failed[setting] = (level, variant.error)
                continue
            _add(search, name, variant, args)
    for setting, (level, why) in failed.items():
        others = skipped.get(setting, [])
        search.step(setting.suffix(), "build", "dropped", reason=f"not built on {level} ({why})" + (
            f"; not tried on {', '.join(others)}, where it would fail for the same reason" if others else ""))


def _level_twins(search, levels: list[str]) -> dict[str, object]:
    """Each level's graph and its int8 twin at the CPU's preset; a level that cannot be built is
    traced once with the settings it takes along."""
    twins = {}
    for level in levels:
        if search.out_of_time("building every level"):
            break
        args = {"levels": [level], "quantize": "dynamic", "per_channel": True}
        name = dynamic_name(level, None)
        try:
            built = export_onnx(search.model, progress=search.progress, **args)
        except (UsageProblem, BuildError) as exc:  # a level this task or model does not take
            search.step(f"{level}, {name}", "build", "dropped", reason=f"not built: {exc}; its other int8 settings "
                                                                       "not tried")
            continue
        _add(search, "torch", built["torch"], {})  # the reference, first among the variants
        graph = built[level]
        if graph.error:
            search.step(f"{level}, {name}", "build", "dropped", reason=f"{level} not built ({graph.error}); its int8 "
                                                                       "settings not tried")
            continue
        _add(search, level, graph, {"levels": [level], "quantize": "none"})
        twin = built[name]
        _add(search, name, twin, args)
        if twin.error:
            search.step(name, "build", "dropped", reason=twin.error)
        else:
            twins[level] = twin
    return twins


def _qdq_once(search, levels: list[str]) -> None:
    """Dynamic QDQ, asked once: onnxruntime refuses it on the first level, so it is not asked again."""
    if not levels:
        return
    try:
        export_onnx(search.model, levels=[levels[0]], quantize="dynamic", quant_format="qdq", progress=False)
    except (UsageProblem, BuildError) as exc:
        rest = f"; not tried on {', '.join(levels[1:])}, where it would fail for the same reason" if levels[1:] else ""
        search.step(f"dynamic QDQ ({EVERY_SETTING})", "build", "dropped", reason=f"not built on {levels[0]} ({exc}){rest}")


def _screen_levels(search, twins: dict) -> list[str]:
    """The ``KEEP_LEVELS`` levels whose int8 twin screens fastest; each level left out is traced."""
    if len(twins) <= KEEP_LEVELS:
        for level in twins:
            search.step(f"{level}-{EVERY_SETTING}", "build", "kept", reason=f"every setting built: only {len(twins)} "
                        "levels quantized, no screen needed")
        return list(twins)
    _, rows = search.measure([(twins[lv].name, "onnxruntime") for lv in twins], SCREEN_TIME, 4.0)
    timed = {lv: search.value(rows[(t.name, "onnxruntime")]) for lv, t in twins.items()
             if rows.get((t.name, "onnxruntime"), {}).get("status") == "ok"}
    order = sorted(timed, key=lambda lv: search.rank(timed[lv]))
    kept = order[:KEEP_LEVELS]
    best = f"{', '.join(twins[lv].name for lv in kept)} ({', '.join(f'{timed[lv]:.3f}' for lv in kept)})"
    for level in twins:
        twin = twins[level].name
        if level in kept:
            search.step(f"{level}-{EVERY_SETTING}", "build", "kept", objective=timed[level], reason=(
                f"{twin} screened among the {KEEP_LEVELS} fastest levels' int8 ({search.key} {timed[level]:.3f}): "
                "every setting built"))
        elif level in timed:
            search.step(f"{level}-{EVERY_SETTING}", "build", "dropped", objective=timed[level], reason=(
                f"not built: {twin} screened {search.key} {timed[level]:.3f}, behind {best}; the settings are built "
                f"on the {KEEP_LEVELS} fastest levels only"))
        else:
            row = rows.get((twin, "onnxruntime")) or {}
            search.step(f"{level}-{EVERY_SETTING}", "build", "dropped", reason=(
                f"not built: {twin} did not run in the level screen ({row.get('status', 'not measured')})"))
    search.notes.append(f"dynamic int8: every level's int8 at this CPU's preset screened first; every weight type, "
                        f"granularity and reduce_range built on the {KEEP_LEVELS} fastest: {', '.join(kept)}")
    return kept


def onnxruntime_only(search, name: str) -> bool:
    """Whether ``name`` is a named dynamic int8 setting (``O2-int8-u8-pt``), screened on onnxruntime
    alone: its level's preset, the same graph with other weights, is what OpenVINO is tried on."""
    return "weight_type" in search.recipes.get(name, {})


def trace_openvino_left_out(search, rows: dict) -> None:
    """One screen line per level whose named settings were not timed on OpenVINO, with what its
    preset did there (``rows``: the screening sweep's, keyed by (variant, backend))."""
    if (search.backends and "openvino" not in search.backends) or not get_backend("openvino").is_available()[0]:
        return
    levels = dict.fromkeys(v.level for n, v in search.variants.items() if onnxruntime_only(search, n) and not v.error)
    for level in levels:
        preset = dynamic_name(level, None)
        row = rows.get((preset, "openvino")) or {}
        did = (f"{search.key} {search.value(row):.3f}" if row.get("status") == "ok" else
               (row.get("status") or "not measured").split(":")[0])
        search.step(f"{level}-{EVERY_SETTING}/openvino", "screen", "dropped", reason=(
            f"not screened on OpenVINO: each setting is {preset}'s graph with other weights, and {preset}/openvino "
            f"was screened ({did}); screened on onnxruntime"))


def _add(search, name: str, variant, args: dict) -> None:
    if name in search.variants:
        return
    search.variants[name] = variant
    search.recipes[name] = dict(args)
