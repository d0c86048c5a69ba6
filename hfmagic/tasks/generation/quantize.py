"""A decoder's own graph builds: fp16 (onnxruntime's float16 converter), weight-only int4 and int8
(onnxruntime's MatMulNBitsQuantizer: RTN or HQQ at 4 bits, RTN at 8), and the check that a quantized
variant quantized its weights."""

from __future__ import annotations

from hfmagic.onnx.build import FP32_FILE, QUANTIZED_FILE, copy_folder_files


def convert_fp16(source, source_file: str, out) -> str:
    """The fp32 export in float16 (onnxruntime's converter; inputs and outputs, the KV cache
    included, stay float32 so every loop feeds it as it feeds fp32), with the folder's files."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    graph = convert_float_to_float16(onnx.load(str(source / source_file)), keep_io_types=True)
    out.mkdir(parents=True, exist_ok=True)
    large = graph.ByteSize() > 1_800_000_000  # protobuf's 2 GB limit: the weights go beside it
    onnx.save(graph, str(out / FP32_FILE), save_as_external_data=large, location=f"{FP32_FILE}.data")
    copy_folder_files(source, out)
    return (f"python -c \"import onnx; from onnxruntime.transformers.float16 import convert_float_to_float16 as c; "
            f"onnx.save(c(onnx.load('onnx/fp32/{source_file}'), keep_io_types=True), 'onnx/fp16/{FP32_FILE}')\"")


RTN_ACCURACY_LEVEL = 4


def int4_quantizer(graph, block_size: int, method: str, bits: int = 4):
    """onnxruntime's MatMulNBitsQuantizer over the MatMuls: ``hqq`` (half-quadratic quantization,
    asymmetric, no data needed) or ``rtn`` (round to nearest, symmetric), at ``bits`` (4, or 8 with rtn)."""
    import logging

    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        HQQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)  # a line a node
    if method == "hqq":
        config = HQQWeightOnlyQuantConfig(block_size=block_size, op_types_to_quantize=("MatMul",))
    else:  # accuracy level 4: int8 compute, MLAS's fast kernel (SmolLM2: 16% faster, perplexity unchanged)
        config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=bits,
                                              accuracy_level=RTN_ACCURACY_LEVEL, op_types_to_quantize=("MatMul",))
    return MatMulNBitsQuantizer(graph, op_types_to_quantize=("MatMul",), algo_config=config)


def quantize_int4(source, source_file: str, out, block_size: int, method: str = "rtn", bits: int = 4) -> str:
    """Weight-only int4 (or, ``bits=8``, int8) of the MatMuls (:func:`int4_quantizer`), written with
    the folder's config and tokenizer beside it."""
    import onnx

    quantizer = int4_quantizer(onnx.load(str(source / source_file)), block_size, method, bits)
    quantizer.process()
    out.mkdir(parents=True, exist_ok=True)
    quantizer.model.save_model_to_file(str(out / QUANTIZED_FILE), use_external_data_format=False)
    copy_folder_files(source, out)
    name = "int4" if bits == 4 else f"int{bits}-wo"
    return nbits_command(f"onnx/fp32/{source_file}", f"onnx/{name}/{QUANTIZED_FILE}", block_size, method, bits)


def nbits_command(source: str, target: str, block_size: int, method: str, bits: int, external: bool = False) -> str:
    """The command line that repeats :func:`int4_quantizer`'s quantization of ``source`` into ``target``
    (``external``: its weights in a file beside the graph)."""
    config = (f"HQQWeightOnlyQuantConfig(block_size={block_size})" if method == "hqq" else
              f"DefaultWeightOnlyQuantConfig(block_size={block_size}, is_symmetric=True, bits={bits}, "
              f"accuracy_level={RTN_ACCURACY_LEVEL})")
    return (f"python -c \"import onnx; from onnxruntime.quantization.matmul_nbits_quantizer import "
            f"MatMulNBitsQuantizer as Q, HQQWeightOnlyQuantConfig, DefaultWeightOnlyQuantConfig; "
            f"q = Q(onnx.load('{source}'), algo_config={config}); q.process(); "
            f"q.model.save_model_to_file('{target}'{', use_external_data_format=True' if external else ''})\"")


QUANTIZED_OPS = {"dynamic": ("MatMulInteger", "DynamicQuantizeMatMul"), "int4": ("MatMulNBits",),
                 "int8-wo": ("MatMulNBits",), "genai-int8-wo": ("MatMulNBits",)}


def check_quantized(quant: str | None, path) -> str | None:
    """A quantized variant in which no weight was quantized is not one: say so (GPT-2's layers
    export as Gemm, which neither dynamic int8 of MatMuls nor MatMulNBits takes)."""
    if quant not in QUANTIZED_OPS:
        return None
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    quantized = sum(n.op_type in QUANTIZED_OPS[quant] for n in graph.node)
    left = sum(n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in weights for n in graph.node)
    if quantized >= left:  # at least half the weight matrices
        return None
    gemm = sum(n.op_type == "Gemm" and len(n.input) > 1 and n.input[1] in weights for n in graph.node)
    how = "MatMulNBits" if QUANTIZED_OPS[quant] == ("MatMulNBits",) else "dynamic int8 of MatMul weights"
    return (f"not quantized: only {quantized} of {quantized + left} weight matrices were ({gemm} of those left are "
            f"Gemm, which {how} does not take); measure fp32")
