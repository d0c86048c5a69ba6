"""The build steps behind ``%export_onnx``: export, optimize, quantize, and what a graph is made of.

Each step writes one variant's folder (the ONNX file beside the model's config and tokenizer, as
``ORTModel*.from_pretrained`` wants it) with the library made for it: optimum's exporter
(``main_export``), ``ORTOptimizer`` with ``AutoOptimizationConfig``, ``ORTQuantizer`` with
``AutoQuantizationConfig``. One exception, measured in offline-stack.md: ORTQuantizer cannot
quantize an already optimized graph, so ``O2-int8`` and its kin go through onnxruntime's
``quantize_dynamic`` with the same settings plus ``DefaultTensorType``. Dynamic int8 named by its
settings (``fused-int8-u8-pt``: weight type, per-channel, reduce_range) goes through ``quantize_dynamic``
on every level, with onnxruntime's own defaults for that weight type. The ``fused`` level is
onnxruntime's transformer optimizer (``optimize_model``) with its fusions for the model type.
Each step also returns the command line that rebuilds it.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
from pathlib import Path

from hfmagic.core.envcard import cpu_flags
from hfmagic.core.errors import UnsupportedError
from hfmagic.core.hashing import weights_sha256
from hfmagic.core.telemetry import openvino_off
from hfmagic.onnx.plan import FOLDER_FILES, FP32_FILE, OPTIMIZED_FILE, QUANTIZED_FILE


def int8_isa(flags: frozenset[str] | None = None) -> str:
    """The AutoQuantizationConfig preset fast on this CPU: avx512_vnni > avx512 > avx2 > arm64."""
    flags = cpu_flags() if flags is None else flags
    if "arm64" in flags:
        return "arm64"
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags or "avx512bw" in flags:
        return "avx512"
    return "avx2"


def isa_note(isa: str, flags: frozenset[str] | None = None) -> str | None:
    """What the int8 choice means on this CPU, when it is worth saying."""
    flags = cpu_flags() if flags is None else flags
    if isa == "avx2" and "avx2" in flags:
        return ("this CPU has AVX2 but not AVX512-VNNI: int8 (u8/u8) saves size here but is usually "
                "no faster than fp32; on a VNNI CPU it runs about 2x faster")
    if isa == "avx2":
        return "this CPU has no AVX2: int8 runs on onnxruntime's slow reference kernels here"
    return None


def quantization_config(isa: str, per_channel: bool, static: bool, exclude: list[str] | None = None):
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    return getattr(AutoQuantizationConfig, isa)(is_static=static, per_channel=per_channel,
                                                nodes_to_exclude=list(exclude) if exclude else None)


def int4_how(method: str) -> str:
    """What an int4 method quantized, and how (hfmagic.tasks.generation.quantize.quantize_graph)."""
    if method == "kquant":
        return ("k-quant (llama.cpp's scale search), int8 compute, in llama.cpp's Q4_K_M mix: the output projection "
                "and the value and down projections of a third of the layers at 8 bits, the other MatMul weights at "
                "4; embeddings and activations float")
    how = "HQQ, asymmetric" if method == "hqq" else "RTN, symmetric, int8 compute"
    return f"{how}: the MatMul weights, the output projection's at 8 bits (RTN); embeddings and activations float"


def describe_quantization(mode: str, isa: str, per_channel: bool, block_size: int | None = None,
                          int4_method: str = "rtn", dynamic=None) -> str:
    if mode == "fp16":
        return "fp16 weights and compute (onnxruntime's float16 converter; inputs and outputs fp32)"
    if mode == "int4":
        return f"int4 weight-only MatMulNBits, block {block_size}, {int4_how(int4_method)}"
    if mode == "int8-wo":
        return (f"int8 weight-only MatMulNBits, block {block_size}, RTN, symmetric, int8 compute: the MatMul weights "
                "(the output projection's too); embeddings and activations float")
    if mode == "nncf":
        return "static int8 QDQ by NNCF's post-training quantization, transformer preset (its own int8 scheme)"
    if mode == "dynamic" and dynamic is not None:
        weights = ("uint8 asymmetric" if dynamic.weight_type == "uint8" else "int8 symmetric")
        return (f"dynamic int8 (QOperator), {weights} weights {'per-channel' if dynamic.per_channel else 'per-tensor'}"
                f"{', reduce_range (7-bit weights)' if dynamic.reduce_range else ''}, uint8 activations")
    return f"{mode} {isa} {'per-channel' if per_channel else 'per-tensor'}"


# -- the steps -------------------------------------------------------------------------------
def export_fp32(model, out: Path, opset: int | None, device: str) -> str:
    """``optimum.exporters.onnx.main_export`` of the model's folder into ``out``."""
    from optimum.exporters.onnx import main_export

    task = model.task_plugin.exporter_task(model)
    main_export(str(model.path), output=out, task=task, opset=opset, device=device,
                library_name="transformers", trust_remote_code=model.trust_remote_code,
                do_validation=False)  # hfmagic validates every variant itself, against PyTorch
    args = ["optimum-cli", "export", "onnx", "--model", str(model.path), "--task", task]
    args += ["--opset", str(opset)] if opset else []
    args += ["--device", device] if device != "cpu" else []
    return shlex.join(args + ["onnx/fp32"])


def optimize(source: Path, out: Path, level: str, device: str) -> str:
    """ORTOptimizer at ``level`` (O1..O4) of the fp32 export in ``source``."""
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    for_gpu = device == "cuda" or level == "O4"  # O4 is fp16 for GPUs; optimum sets it so too
    config = AutoOptimizationConfig.with_optimization_level(level, for_gpu=for_gpu)
    ORTOptimizer.from_pretrained(source, file_names=[FP32_FILE]).optimize(config, save_dir=out)
    return shlex.join(["optimum-cli", "onnxruntime", "optimize", "--onnx_model", "onnx/fp32",
                       f"-{level}", "-o", f"onnx/{level}"])


def fuse(source: Path, out: Path, model_type: str) -> str:
    """The ``fused`` level: onnxruntime's transformer optimizer (``optimize_model``) with its fusions
    for the model type (optimum's table maps a transformers model type to onnxruntime's: bert for
    DistilBERT, RoBERTa, ...) and its default fusion options (EmbedLayerNormalization included, which
    ORTOptimizer's O2 leaves out), at ``opt_level=0``: no onnxruntime graph optimization is baked in,
    onnxruntime applies its own when it loads the file. A graph in which it fuses nothing is refused
    (it would be fp32 again under another name)."""
    from onnxruntime.transformers.optimizer import optimize_model
    from optimum.onnxruntime.utils import ORTConfigManager

    try:
        ort_type = ORTConfigManager.get_model_ort_type(model_type.replace("_", "-"))
    except (KeyError, ValueError, NotImplementedError):
        try:
            ort_type = ORTConfigManager.get_model_ort_type(model_type)
        except (KeyError, ValueError, NotImplementedError):
            raise UnsupportedError(f"onnxruntime's transformer optimizer has no fusions for {model_type} models "
                                   "(level fused); use O1 or O2") from None
    optimized = optimize_model(str(source / FP32_FILE), model_type=ort_type, num_heads=0, hidden_size=0, opt_level=0)
    if not any(n.domain == "com.microsoft" for n in optimized.model.graph.node):
        raise UnsupportedError(f"onnxruntime's transformer optimizer ({ort_type} fusions) fused nothing in this "
                               f"{model_type} graph: level fused would be fp32 again")
    out.mkdir(parents=True, exist_ok=True)
    optimized.save_model_to_file(str(out / OPTIMIZED_FILE), use_external_data_format=optimized.model.ByteSize() > 2e9)
    copy_folder_files(source, out)
    snippet = ("from onnxruntime.transformers.optimizer import optimize_model; optimize_model(\"onnx/fp32/model.onnx\", "
               f"model_type=\"{ort_type}\", num_heads=0, hidden_size=0, opt_level=0)"
               f".save_model_to_file(\"onnx/fused/{OPTIMIZED_FILE}\")")
    return f"mkdir -p onnx/fused && python -c {shlex.quote(snippet)}"


def quantize_dynamic(source: Path, source_file: str, out: Path, isa: str, per_channel: bool,
                     name: str, operators=None, dynamic=None) -> str:
    """Dynamic int8: ORTQuantizer for the fp32 graph, onnxruntime's quantize_dynamic for an
    optimized one (ORTQuantizer fails there: "Unable to find data type for weight_name").
    ``operators``: the op types to quantize (the task's; None: optimum's default for the ISA); then
    only the nodes that have a weight (an initializer) are: a decoder's attention MatMuls (scores,
    probabilities x values) quantized on the fly take SmolLM2's logits to a cosine of 0.005.
    ``dynamic`` (:class:`hfmagic.onnx.plan.Dynamic`): the settings named, through ``quantize_dynamic``
    on every level, with onnxruntime's defaults for the weight type (int8 symmetric, uint8 asymmetric)."""
    qconfig = quantization_config(isa, per_channel, static=False)
    if operators:
        qconfig.operators_to_quantize = list(operators)
        qconfig.nodes_to_exclude = without_weights(source / source_file, operators)
    if dynamic is not None:
        return _quantize_named(source, source_file, out, qconfig, name, dynamic)
    if source_file == FP32_FILE:
        from optimum.onnxruntime import ORTQuantizer

        ORTQuantizer.from_pretrained(source, file_name=FP32_FILE).quantize(qconfig, save_dir=out)
        return shlex.join(["optimum-cli", "onnxruntime", "quantize", "--onnx_model", "onnx/fp32",
                           f"--{isa}"] + (["--per_channel"] if per_channel else []) + ["-o", f"onnx/{name}"])
    import onnx
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    options = {"WeightSymmetric": qconfig.weights_symmetric, "ActivationSymmetric": qconfig.activations_symmetric,
               "DefaultTensorType": onnx.TensorProto.FLOAT}
    ops = [getattr(op, "value", op) for op in qconfig.operators_to_quantize]
    out.mkdir(parents=True, exist_ok=True)
    ort_quantize_dynamic(source / source_file, out / QUANTIZED_FILE, op_types_to_quantize=ops,
                         per_channel=per_channel, reduce_range=qconfig.reduce_range,
                         weight_type=qconfig.weights_dtype, extra_options=options,
                         nodes_to_exclude=qconfig.nodes_to_exclude or [])
    copy_folder_files(source, out)
    snippet = ("from onnxruntime.quantization import quantize_dynamic, QuantType; import onnx; "
               f"quantize_dynamic(\"onnx/{name.split('-')[0]}/{source_file}\", \"onnx/{name}/{QUANTIZED_FILE}\", "
               f"op_types_to_quantize={json.dumps(ops)}, per_channel={per_channel}, "
               f"reduce_range={qconfig.reduce_range}, weight_type=QuantType.{qconfig.weights_dtype.name}, "
               f"extra_options={{\"WeightSymmetric\": {qconfig.weights_symmetric}, \"ActivationSymmetric\": "
               f"{qconfig.activations_symmetric}, \"DefaultTensorType\": onnx.TensorProto.FLOAT}})")
    return f"mkdir -p onnx/{name} && python -c {shlex.quote(snippet)}"


def _quantize_named(source: Path, source_file: str, out: Path, qconfig, name: str, dynamic) -> str:
    """Dynamic int8 with the weight type, granularity and reduce_range named (``quantize_dynamic``)."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    weight = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[dynamic.weight_type]
    ops = [getattr(op, "value", op) for op in qconfig.operators_to_quantize]
    out.mkdir(parents=True, exist_ok=True)
    ort_quantize_dynamic(source / source_file, out / QUANTIZED_FILE, op_types_to_quantize=ops,
                         per_channel=dynamic.per_channel, reduce_range=dynamic.reduce_range, weight_type=weight,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                         nodes_to_exclude=qconfig.nodes_to_exclude or [])
    copy_folder_files(source, out)
    level = "fp32" if name.startswith("int8") else name.split("-")[0]
    snippet = ("from onnxruntime.quantization import quantize_dynamic, QuantType; import onnx; "
               f"quantize_dynamic(\"onnx/{level}/{source_file}\", \"onnx/{name}/{QUANTIZED_FILE}\", "
               f"op_types_to_quantize={json.dumps(ops)}, per_channel={dynamic.per_channel}, "
               f"reduce_range={dynamic.reduce_range}, weight_type=QuantType.{weight.name}, "
               "extra_options={\"DefaultTensorType\": onnx.TensorProto.FLOAT})")
    return f"mkdir -p onnx/{name} && python -c {shlex.quote(snippet)}"


_RANGES: dict[tuple, dict] = {}  # (fp32 folder, method, calibration digest) -> activation ranges


def _digest(features: dict) -> str:
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for name in sorted(features):
        array = np.ascontiguousarray(features[name])
        digest.update(f"{name}{array.shape}{array.dtype}".encode() + array.tobytes())
    return digest.hexdigest()


def quantizable_nodes(path: Path, isa: str, per_channel: bool = True) -> dict[str, list[str]]:
    """The nodes static int8 would quantize in the graph at ``path``, by operator type."""
    import onnx

    ops = set(quantization_config(isa, per_channel, static=True).operators_to_quantize)
    graph = onnx.load(str(path), load_external_data=False).graph
    out: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op_type in ops:
            out.setdefault(node.op_type, []).append(node.name)
    return out


def without_weights(path: Path, operators) -> list[str]:
    """Names of the ``operators`` nodes none of whose inputs is an initializer."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type in operators and not any(x in weights for x in n.input)]


def unbinnable(path: Path, operators) -> dict[str, str]:
    """The ``operators`` (operator type -> why) that read a float constant too large for onnxruntime's
    histogram calibrators (entropy, percentile): they bin each tensor over [-max|x|, max|x|], whose
    width overflows float32 beyond half its largest value (a BERT's attention mask holds its most
    negative, -3.4e38, and the calibration stops with numpy's "Too many bins")."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    limit = np.finfo(np.float32).max / 2
    huge = {}
    graph = onnx.load(str(path), load_external_data=False).graph
    for node in graph.node:
        if node.op_type in ("Constant", "ConstantOfShape"):
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == onnx.TensorProto.FLOAT:
                    value = numpy_helper.to_array(attr.t)
                    if value.size and np.abs(value).max() > limit:
                        huge[node.output[0]] = f"{node.name}'s {float(value.ravel()[0]):.3g}"
    out: dict[str, str] = {}
    for node in graph.node:
        if node.op_type in operators and node.op_type not in out:
            for name in node.input:
                if name in huge:
                    out[node.op_type] = f"{huge[name]} (in {node.name})"
                    break
    return out


def quantize_static(source: Path, out: Path, isa: str, per_channel: bool, features: dict,
                    method: str = "minmax", exclude: list[str] | None = None) -> str:
    """Static int8 of the fp32 graph: ORTQuantizer.fit (calibration on ``features``, the calibration
    examples as the graph's inputs, made by the task: ``method`` minmax, entropy or percentile),
    then quantize."""
    from datasets import Dataset
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoCalibrationConfig

    qconfig = quantization_config(isa, per_channel, static=True, exclude=exclude)
    kept_float = unbinnable(source / FP32_FILE, qconfig.operators_to_quantize) if method != "minmax" else {}
    if kept_float:  # onnxruntime's histogram calibrators fail on them: those operators stay float
        qconfig.operators_to_quantize = [op for op in qconfig.operators_to_quantize if op not in kept_float]
    quantizer = ORTQuantizer.from_pretrained(source, file_name=FP32_FILE)
    count = len(next(iter(features.values())))
    if method != "minmax" and count > 8:  # the histogram calibrators stack every batch's activations: whole batches only
        count -= count % 8
        features = {k: v[:count] for k, v in features.items()}
    calibration = Dataset.from_dict({k: v.tolist() for k, v in features.items()})
    config = {"minmax": AutoCalibrationConfig.minmax, "entropy": AutoCalibrationConfig.entropy,
              "percentile": AutoCalibrationConfig.percentiles}[method](calibration)
    out.mkdir(parents=True, exist_ok=True)
    key = (str(source), method, _digest(features))
    ranges = _RANGES.get(key)  # the sensitivity pass re-quantizes with nodes left out: calibrate once
    if ranges is None:
        ranges = _RANGES[key] = quantizer.fit(dataset=calibration, calibration_config=config,
                                              operators_to_quantize=qconfig.operators_to_quantize, batch_size=8,
                                              onnx_augmented_model_name=out / "augmented_model.onnx")
    (out / "augmented_model.onnx").unlink(missing_ok=True)
    quantizer.quantize(save_dir=out, quantization_config=qconfig, calibration_tensors_range=ranges)
    return ("(no command line: static int8 calibrates in Python with ORTQuantizer.fit and "
            f"AutoCalibrationConfig.{'percentiles' if method == 'percentile' else method} on {count} examples, "
            "then ORTQuantizer.quantize with "
            f"AutoQuantizationConfig.{isa}(is_static=True, per_channel={per_channel}"
            + (f", nodes_to_exclude=<{len(exclude)} nodes>" if exclude else "")
            + (f", operators_to_quantize without {', '.join(kept_float)}" if kept_float else "") + "))"
            + "".join(f"; {op} kept in float: it reads {why}" for op, why in kept_float.items()))


def quantize_nncf(source: Path, out: Path, features: dict) -> str:
    """Static int8 of the fp32 graph by NNCF: ``nncf.quantize`` with ``model_type=TRANSFORMER``
    (its preset for transformers: SmoothQuant, attention's inputs quantized, float where its rules
    say) over every calibration example, one at a time. The result is a QDQ graph: OpenVINO runs it
    as int8; onnxruntime runs it too (QDQ semantics), usually slower."""
    import logging

    openvino_off()  # NNCF sends its events through openvino_telemetry when it can import it
    import nncf
    import onnx

    nncf.set_log_level(logging.ERROR)
    model = onnx.load(str(source / FP32_FILE))
    names = {i.name for i in model.graph.input}
    count = len(next(iter(features.values())))
    items = [{k: v[i:i + 1] for k, v in features.items() if k in names} for i in range(count)]
    with quiet_rich():
        quantized = nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=count)
    out.mkdir(parents=True, exist_ok=True)
    large = quantized.ByteSize() > 2_000_000_000  # protobuf's limit: the weights go beside it
    onnx.save(quantized, str(out / QUANTIZED_FILE), save_as_external_data=large)
    copy_folder_files(source, out)
    return ("(no command line: NNCF quantizes in Python: nncf.quantize(onnx.load(fp32/model.onnx), "
            f"nncf.Dataset(<{count} examples>), model_type=nncf.ModelType.TRANSFORMER, subset_size={count}))")


# -- helpers ---------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_rich():
    """rich's shared console silenced, and restored after: NNCF draws its progress bars there (in
    Jupyter as a widget of their own in the cell, which hfmagic's own export bar already covers)."""
    import io

    import rich

    console = rich.get_console()
    saved = dict(console.__dict__)
    rich.reconfigure(file=io.StringIO(), quiet=True, force_jupyter=False, force_terminal=False)
    try:
        yield
    finally:
        console.__dict__ = saved


def copy_folder_files(source: Path, out: Path) -> None:
    for name in FOLDER_FILES:
        if (source / name).exists() and not (out / name).exists():
            shutil.copy2(source / name, out / name)


def graph_stats(path: Path) -> tuple[int | None, int | None]:
    """(node count, fused-node count) over every graph of the variant (:func:`graph_files`): fused
    nodes are onnxruntime contrib ops (the com.microsoft domain: Attention, SkipLayerNormalization,
    BiasGelu, FastGelu, QAttention, ...); (None, None) for a variant with no ONNX graph (a GGUF file)."""
    import onnx

    graphs = [p for p in graph_files(path) if p.suffix == ".onnx"]
    if not graphs:
        return None, None
    nodes = [n for p in graphs for n in onnx.load(str(p), load_external_data=False).graph.node]
    return len(nodes), sum(1 for n in nodes if n.domain == "com.microsoft")


def graph_files(path: Path) -> list[Path]:
    """The files a variant is: every .onnx graph of its folder (one for an encoder; an
    encoder-decoder's encoder and decoders are several) and their external-data files
    (``model.onnx_data``, as torch's exporter names it, or ``model.onnx.data``, as
    onnxruntime-genai's builder does). ``path`` is the graph a runtime is pointed at."""
    graphs = sorted(path.parent.glob("*.onnx")) or [path]
    extra = [q for g in graphs for q in (g.with_name(g.name + "_data"), g.with_name(g.name + ".data")) if q.exists()]
    return graphs + extra


def onnx_size(path: Path) -> int:
    """Bytes of every file the variant is (:func:`graph_files`)."""
    return sum(p.stat().st_size for p in graph_files(path))


def variant_sha256(path: Path) -> str:
    """The variant's hash: its one .onnx file's own, else one hash of each file's name and hash."""

    return weights_sha256(graph_files(path))


def check_exportable(model, tasks: list[str]) -> None:
    """optimum's ONNX exporter supports this architecture for this task, or a clear error naming
    the ones of ``tasks`` (hfmagic's) it does support."""
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs)
    from optimum.exporters.tasks import TasksManager

    model_type = model.model_type.replace("_", "-")
    # read the table directly: TasksManager.get_supported_model_type_for_task raises KeyError('onnx')
    # once optimum-intel has registered model types that only its OpenVINO exporter takes
    task = model.task_plugin.exporter_task(model)
    supported = [t for t, exporters in TasksManager._SUPPORTED_MODEL_TYPE.items() if task in exporters.get("onnx", {})]
    if model_type in supported or model.model_type in supported:
        return
    known = TasksManager._SUPPORTED_MODEL_TYPE.get(model_type) or TasksManager._SUPPORTED_MODEL_TYPE.get(model.model_type)
    if known is not None:
        ours = [t for t in known.get("onnx", {}) if t in tasks]
        raise UnsupportedError(f"optimum's ONNX exporter cannot export a {model.model_type} model for "
                               f"{model.task}; for {model.model_type} it supports: {', '.join(ours) or 'none of hfmagic tasks'} "
                               "(load it with --task one of those)")
    raise UnsupportedError(f"optimum's ONNX exporter does not support the {model.model_type} architecture "
                           f"({model.architecture}); for {model.task} it supports: {', '.join(sorted(supported))}")


def default_opset(model) -> int | None:
    """The opset optimum exports this architecture with by default (its recommended minimum)."""
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs)
    from optimum.exporters.tasks import TasksManager

    try:
        constructor = TasksManager.get_exporter_config_constructor(
            "onnx", task=model.task_plugin.exporter_task(model), model_type=model.model_type.replace("_", "-"),
            library_name="transformers")
        return constructor.func.DEFAULT_ONNX_OPSET
    except (KeyError, ValueError, AttributeError):
        return None


def check_opset(opset: int | None) -> None:
    if opset is None:
        return
    from torch.onnx._constants import ONNX_MAX_OPSET, ONNX_MIN_OPSET

    if not ONNX_MIN_OPSET <= opset <= ONNX_MAX_OPSET:
        raise UnsupportedError(f"the exporter cannot write opset {opset}; use {ONNX_MIN_OPSET}..{ONNX_MAX_OPSET} "
                               "(or leave --opset out for the architecture's default)")
