"""A decoder's own graph builds: fp16 (onnxruntime's float16 converter), weight-only int4 and int8
(onnxruntime's MatMulNBitsQuantizer: RTN, HQQ or llama.cpp's k-quant mix at 4 bits, RTN at 8), and
the check that a quantized variant quantized its weights."""

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


def fold_tied_head(graph) -> list[str]:
    """Make a tied output projection's weight a constant the quantizer can take: optimum exports a
    model whose lm_head shares the embedding table (SmolLM2, Llama 3.2) as ``MatMul(x,
    Transpose(embed))``, which onnxruntime folds at load but MatMulNBitsQuantizer skips (its weight
    is no initializer), so the largest matrix stayed fp32. Each Transpose of an initializer becomes
    the transposed initializer (the embedding itself stays, for the Gather). Returns the folded names."""
    from onnx import numpy_helper

    weights = {i.name: i for i in graph.graph.initializer}
    folded = []
    for node in list(graph.graph.node):
        if node.op_type == "Transpose" and len(node.input) == 1 and node.input[0] in weights:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            value = numpy_helper.to_array(weights[node.input[0]]).transpose(perm)
            graph.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
            graph.graph.node.remove(node)
            folded.append(node.output[0])
    return folded


def head_nodes(graph) -> list[str]:
    """The output projection's MatMul (``/lm_head/MatMul``) where its weight is a constant."""
    weights = {i.name for i in graph.graph.initializer}
    return [n.name for n in graph.graph.node
            if n.op_type == "MatMul" and "lm_head" in n.name and any(i in weights for i in n.input)]


def eight_bit_nodes(graph) -> dict[str, dict]:
    """llama.cpp's Q4_K_M mix, as onnxruntime-genai's builder applies it (``k_quant_mixed``), for any
    decoder graph: the output projection, and the value (or fused qkv) and down projections of the
    first and last eighth of the layers and of every third layer between, at 8 bits; the MatMul
    nodes' names say which (``/model/layers.3/self_attn/v_proj/MatMul``, ``/lm_head/MatMul``)."""
    import re

    weights = {i.name for i in graph.graph.initializer}
    layered: dict[int, list[str]] = {}
    for node in graph.graph.node:
        found = re.search(r"layers[./](\d+)/.*(v_proj|qkv_proj|down_proj)/", node.name)
        if node.op_type == "MatMul" and found and any(i in weights for i in node.input):
            layered.setdefault(int(found.group(1)), []).append(node.name)
    count = 1 + max(layered, default=-1)
    more = [i for i in range(count) if i < count / 8 or i >= 7 * count / 8 or (i - round(count / 8)) % 3 == 2]
    return {name: {"bits": 8} for name in head_nodes(graph) + [n for i in more for n in layered.get(i, [])]}


def int4_quantizer(graph, block_size: int, method: str, bits: int = 4, exclude=()):
    """onnxruntime's MatMulNBitsQuantizer over the MatMuls (but ``exclude``): ``hqq`` (half-quadratic
    quantization, asymmetric, no data needed), ``rtn`` (round to nearest, symmetric) at ``bits`` (4,
    or 8), or ``kquant`` (llama.cpp's k-quant scale search, the sensitive matrices at 8 bits:
    :func:`eight_bit_nodes`)."""
    import logging

    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        HQQWeightOnlyQuantConfig,
        KQuantWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)  # a line a node
    if method == "kquant":
        config = KQuantWeightOnlyQuantConfig(op_types_to_quantize=("MatMul",),
                                             customized_weight_config=eight_bit_nodes(graph))
        return MatMulNBitsQuantizer(graph, block_size=block_size, is_symmetric=True, accuracy_level=RTN_ACCURACY_LEVEL,
                                    op_types_to_quantize=("MatMul",), algo_config=config, nodes_to_exclude=exclude)
    if method == "hqq":
        config = HQQWeightOnlyQuantConfig(block_size=block_size, op_types_to_quantize=("MatMul",))
    else:  # accuracy level 4: int8 compute, MLAS's fast kernel (SmolLM2: 16% faster, perplexity unchanged)
        config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=bits,
                                              accuracy_level=RTN_ACCURACY_LEVEL, op_types_to_quantize=("MatMul",))
    return MatMulNBitsQuantizer(graph, op_types_to_quantize=("MatMul",), algo_config=config, nodes_to_exclude=exclude)


def quantize_graph(graph, block_size: int, method: str = "rtn", bits: int = 4):
    """A decoder's MatMul weights at ``bits`` by ``method`` (:func:`int4_quantizer`), its output
    projection at 8 bits whatever the rest (a tied one made a constant first: :func:`fold_tied_head`);
    the embedding table stays float (one row is read per token). Returns onnxruntime's ONNXModel."""
    fold_tied_head(graph)
    head = head_nodes(graph) if bits == 4 and method != "kquant" else []  # kquant's mix has it at 8 already
    quantizer = int4_quantizer(graph, block_size, method, bits, exclude=head)
    quantizer.process()
    if head:  # a second pass finds the head alone left a MatMul: RTN at 8 bits
        quantizer = int4_quantizer(quantizer.model.model, block_size, "rtn", 8)
        quantizer.process()
    return quantizer.model


def quantize_int4(source, source_file: str, out, block_size: int, method: str = "rtn", bits: int = 4) -> str:
    """Weight-only int4 (or, ``bits=8``, int8) of the MatMuls (:func:`quantize_graph`), written with
    the folder's config and tokenizer beside it."""
    import onnx

    quantized = quantize_graph(onnx.load(str(source / source_file)), block_size, method, bits)
    out.mkdir(parents=True, exist_ok=True)
    quantized.save_model_to_file(str(out / QUANTIZED_FILE), use_external_data_format=False)
    copy_folder_files(source, out)
    name = "int4" if bits == 4 else f"int{bits}-wo"
    return nbits_command(f"onnx/fp32/{source_file}", f"onnx/{name}/{QUANTIZED_FILE}", block_size, method, bits)


def nbits_command(source: str, target: str, block_size: int, method: str, bits: int, external: bool = False) -> str:
    """The command line that repeats :func:`quantize_graph`'s quantization of ``source`` into
    ``target`` (``external``: its weights in a file beside the graph): onnxruntime's
    MatMulNBitsQuantizer with the settings named, through hfmagic's two steps around it (the tied
    head folded; the head's pass at 8 bits)."""
    return (f"python -c \"import onnx; from hfmagic.tasks.generation.quantize import quantize_graph; "
            f"quantize_graph(onnx.load('{source}'), block_size={block_size}, method='{method}', bits={bits})"
            f".save_model_to_file('{target}'{', use_external_data_format=True' if external else ''})\"")


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
