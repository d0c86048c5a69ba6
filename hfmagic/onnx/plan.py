"""What export_onnx can build, by name: the optimization levels, the quantizations, the variant
names, and the steps of one export in build order (a variant starts from another: O2 from fp32,
O2-int8 from O2). Only names and small value objects here; building is :mod:`hfmagic.onnx.build`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hfmagic.core.errors import UnsupportedError

TORCH = "torch"  # the model itself, run by PyTorch: every variant is validated against it

FP32_FILE = "model.onnx"
OPTIMIZED_FILE = "model_optimized.onnx"
QUANTIZED_FILE = "model_quantized.onnx"
GGUF_FILE = "model.gguf"  # a decoder's llama.cpp variants
# what a variant folder keeps besides the .onnx file (config and tokenizer, from the model's folder)
FOLDER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
                "added_tokens.json", "ort_config.json")

# fused: onnxruntime's transformer optimizer (onnxruntime.transformers.optimizer.optimize_model) with its
# own fusions for the model type (attention, embeddings + LayerNorm, skip LayerNorm, GELU) and none of
# onnxruntime's graph optimizations baked in: what Olive's OrtTransformersOptimization pass writes
LEVELS = ("fp32", "O1", "O2", "O3", "O4", "fused")
# every variant name export_onnx can build: torch, the levels, their dynamic int8 twins (none for
# O4, which is fp16), static int8; and the dynamic int8 named by its settings (dynamic_name)
VARIANT_NAMES = (TORCH, *LEVELS, "int8", *(f"{lv}-int8" for lv in (*LEVELS[1:4], "fused")), "int8-static", "int8-nncf")
DEFAULT_LEVELS = ["fp32", "O2"]
# int4 and int8-wo: weight-only (MatMulNBits at 4 or 8 bits), for text-generation models; nncf: NNCF's
# static int8 (QDQ), for OpenVINO above all
QUANTIZE = ("none", "dynamic", "static", "auto", "int4", "int8-wo", "nncf")
INT4_BLOCK = 32
# rtn: fast (MatMulNBits' int8-compute kernel); hqq: keeps quality (SmolLM2 at 99.9% of fp32's perplexity,
# RTN 117%) but its float zero points run on a slower kernel (4x slower than RTN here, AVX2, onnxruntime 1.32)
# kquant: llama.cpp's k-quant scale search with its Q4_K_M mix (the output projection and a third of the
# layers' value and down projections at 8 bits), as onnxruntime-genai's builder's k_quant_mixed
INT4_METHODS = ("rtn", "hqq", "kquant")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")  # static int8's activation ranges
WEIGHT_TYPES = {"int8": "s8", "uint8": "u8"}  # dynamic int8's weights: onnxruntime's QuantType.QInt8 / QUInt8
# the graph formats of a quantized model: QOperator (MatMulInteger, QAttention: what dynamic int8 writes)
# and QDQ (QuantizeLinear/DequantizeLinear pairs around float ops: what static int8 and NNCF write)
QUANT_FORMATS = ("qoperator", "qdq")


@dataclass(frozen=True)
class Dynamic:
    """Dynamic int8's settings as named (``weight_type`` int8/uint8, per-channel, reduce_range):
    the variant is named ``<level>-int8-<s8|u8>-<pc|pt>[-rr]``; ``None``: the CPU's preset
    (``int8``, ``O2-int8``: the names and cache keys they always had)."""

    weight_type: str
    per_channel: bool
    reduce_range: bool

    def suffix(self) -> str:
        return (f"int8-{WEIGHT_TYPES[self.weight_type]}-{'pc' if self.per_channel else 'pt'}"
                + ("-rr" if self.reduce_range else ""))


def parse_dynamic_name(name: str) -> tuple[str, Dynamic] | None:
    """``(level, settings)`` of a named dynamic int8 twin (``fused-int8-u8-pt`` -> fused, uint8
    per-tensor), the inverse of :func:`dynamic_name`; None for any other name."""
    match = re.fullmatch(r"(?:(.+)-)?int8-(s8|u8)-(pc|pt)(-rr)?", name)
    if match is None:
        return None
    level, weights, granularity, reduced = match.groups()
    weight_type = next(k for k, v in WEIGHT_TYPES.items() if v == weights)
    return level or "fp32", Dynamic(weight_type, granularity == "pc", bool(reduced))


def dynamic_name(level: str, dynamic: Dynamic | None) -> str:
    """The name of ``level``'s dynamic int8 twin: ``int8``/``O2-int8`` (the CPU's preset), or named
    by its settings: ``int8-u8-pt``, ``fused-int8-s8-pc-rr``."""
    base = "int8" if dynamic is None else dynamic.suffix()
    return base if level == "fp32" else f"{level}-{base}"


OWN_RUNTIMES = ("genai", "gguf")  # a decoder's runtimes with a format of their own: onnxruntime-genai's, llama.cpp's


def own_runtime(name: str | None) -> str | None:
    """The runtime of its own a variant (or step) ``name`` is for, by its prefix: ``genai`` for
    ``genai-*``, ``gguf`` for ``gguf-*``; None for the rest."""
    return next((own for own in OWN_RUNTIMES if name and name.startswith(f"{own}-")), None)


@dataclass(frozen=True)
class Step:
    """One variant to build: from which other one, at which level, with which quantization."""

    name: str
    level: str
    source: str | None = None     # the step it starts from (None: the model itself)
    quant: str | None = None      # None, "dynamic", "static" or "nncf" (and the tasks' own: int4, fp16, genai-*, gguf-*)
    include: bool = True          # returned to the caller (fp32 may be built only as a base)

    @property
    def runtime(self) -> str | None:
        """What runs it when optimum's ORTModel does not (:func:`own_runtime`); None for the ONNX graphs."""
        return own_runtime(self.quant)

    @property
    def calibrated(self) -> bool:
        """Whether it is built from calibration examples (static int8, NNCF's, llama.cpp's importance
        matrix), which then key it in the cache."""
        return self.quant in ("static", "nncf") or (self.quant or "").endswith("-imatrix")

    @property
    def file(self) -> str:
        if self.runtime == "gguf":
            return GGUF_FILE
        if self.quant and (self.quant.startswith("genai") or self.quant == "fp16"):  # a whole graph, not a quantizer's
            return FP32_FILE
        if self.quant:
            return QUANTIZED_FILE
        return FP32_FILE if self.level == "fp32" else OPTIMIZED_FILE


def plan(levels: list[str], quantize: str, static: bool, dynamic: Dynamic | None = None) -> list[Step]:
    """The steps for these levels and this quantization, in build order (see the module docstring)."""
    if quantize in ("int4", "int8-wo"):
        raise UnsupportedError(f"--quantize {quantize} (weight-only) is built for text-generation models; use "
                               "dynamic, static or auto for this one")
    steps = [Step("fp32", "fp32", include="fp32" in levels)]
    steps += [Step(lv, lv, "fp32") for lv in levels if lv != "fp32"]
    if quantize in ("auto", "dynamic"):
        steps += [Step(dynamic_name(lv, dynamic), lv, lv, "dynamic") for lv in levels if lv != "O4"]
    if static and quantize in ("auto", "static"):
        steps.append(Step("int8-static", "fp32", "fp32", "static"))
    if quantize == "nncf":
        steps.append(Step("int8-nncf", "fp32", "fp32", "nncf"))
    return steps
