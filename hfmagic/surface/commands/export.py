"""``%export_onnx MODEL``: ONNX variants at optimization levels, with quantization, validated."""

from IPython.core.magic_arguments import argument

from hfmagic.surface.commands import NAME_ARG, QUIET_ARG, csv_list, data_ref

MAGIC = "export_onnx"
CLI = "export"
DOC = """Export a model to ONNX variants: optimization levels and int8 quantization, each validated
against PyTorch and cached by content.

Builds fp32 and each level asked for; with --quantize auto/dynamic also an int8 twin of each
fp32/O1/O2/O3/fused graph (int8, O2-int8, ...), with the int8 config picked for this CPU, or named by
--weight-type/--no-per-channel/--reduce-range (fused-int8-u8-pt, ...); static int8
(int8-static) with --quantize static, or auto plus --calibration; NNCF's static int8 (int8-nncf, a QDQ
file OpenVINO runs as int8) with --quantize nncf. The default builds fp32, O2,
int8 and O2-int8. A text-generation model (a decoder LLM) exports with its KV cache: fp32, int8
(dynamic, MatMul weights) and int4 (weight-only, --block-size), validated on logits and greedy tokens.
"""
ARGS = [
    argument("model", help="a model handle's name, a folder, a hub id, or demo"),
    argument("--levels", help="comma-separated: fp32,O1,O2,O3,O4,fused (default fp32,O2); fused: onnxruntime's "
                              "transformer optimizer's fusions for the model type; text-generation: fp32, fp16, "
                              "genai (onnxruntime-genai's builds) and gguf (llama.cpp's files; default: fp32 and "
                              "those installed)"),
    argument("--quantize", default="auto", choices=["none", "dynamic", "static", "auto", "int4", "int8-wo", "nncf"],
             help="int8 quantization: auto picks the config for this CPU (default); nncf: NNCF's static int8; "
                  "text-generation models: auto builds weight-only int8 (int8-wo) and int4, int4 or int8-wo only "
                  "that one, dynamic the int8 that quantizes activations too"),
    argument("--block-size", type=int, default=32, help="int4's and int8-wo's quantization block (default 32)"),
    argument("--int4-method", default="rtn", choices=["rtn", "hqq", "kquant"],
             help="int4's weights: rtn (round to nearest; default, fast), hqq (half-quadratic: keeps more quality, "
                  "slower on CPUs) or kquant (llama.cpp's k-quant search and Q4_K_M mix: the output projection and "
                  "a third of the layers' value and down projections at 8 bits)"),
    argument("--per-channel", dest="per_channel", action="store_true", default=True,
             help="per-channel int8 weights (default; keeps accuracy)"),
    argument("--no-per-channel", dest="per_channel", action="store_false", help="per-tensor int8 weights"),
    argument("--weight-type", choices=["int8", "uint8"],
             help="dynamic int8's weights (default: the CPU's preset); named, the variants are <level>-int8-<s8|u8>-<pc|pt>"),
    argument("--reduce-range", dest="reduce_range", action="store_true", default=None,
             help="dynamic int8 with 7-bit weights (onnxruntime's reduce_range; names the variants ...-rr)"),
    argument("--no-reduce-range", dest="reduce_range", action="store_false", help="dynamic int8 with full-range weights"),
    argument("--quant-format", choices=["qoperator", "qdq"],
             help="qoperator (dynamic int8's) or qdq (static int8's and NNCF's); default: each one's own"),
    argument("--calibration", metavar="DATA",
             help="texts for static int8: a DataFrame/Dataset name, a CSV/JSON/Parquet file, or demo"),
    argument("--calibration-method", default="minmax", choices=["minmax", "entropy", "percentile"],
             help="how static int8 sets activation ranges from the calibration examples (default minmax)"),
    argument("--text-column", metavar="COLUMN", help="the calibration data's text column (default: guessed)"),
    argument("--samples", type=int, default=100, help="calibration samples (default 100)"),
    argument("--opset", type=int, help="ONNX opset (default: the exporter's)"),
    argument("--output", dest="output_dir", metavar="DIR", help="write the variants here, not the cache"),
    argument("--device", default="cpu", choices=["cpu", "cuda"], help="device to export and optimize for"),
    argument("--force", action="store_true", help="rebuild even when cached"),
    NAME_ARG,
    argument("-o", dest="output", action="store_true", help="return the variants object"),
    QUIET_ARG,
]


def run(args, ctx):
    from hfmagic.export.api import export_onnx

    model = ctx.model(args.model)
    calibration = data_ref(ctx, args.calibration)
    variants = export_onnx(
        model, levels=csv_list(args.levels, what="level") if args.levels else None, quantize=args.quantize,
        block_size=args.block_size, int4_method=args.int4_method,
        per_channel=args.per_channel, weight_type=args.weight_type, reduce_range=args.reduce_range,
        quant_format=args.quant_format, calibration=calibration,
        samples=args.samples, calibration_method=args.calibration_method, opset=args.opset, output=args.output_dir, device=args.device,
        force=args.force, text_column=args.text_column, progress=not args.quiet,
    )
    ctx.bind(args.name or f"{model.name}_onnx", variants)
    return variants
