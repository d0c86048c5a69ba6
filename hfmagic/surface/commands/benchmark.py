"""``%benchmark MODEL_OR_VARIANTS``: latency, throughput and memory across variants and shapes."""

from IPython.core.magic_arguments import argument

from hfmagic.surface.commands import CLUSTER_ARG, OUTPUT_ARGS, csv_list, positive_ints

MAGIC = "benchmark"
CLI = "benchmark"
DOC = """Benchmark variants x backends x batch sizes x sequence lengths: latency percentiles,
throughput, memory and speed-up with a bootstrap 95% interval. Measures in a worker process
unless --inline. A text-generation model is measured by greedy generations of --new-tokens from
prompts of --prompt-lens tokens: time to first token, time per output token, inter-token latency.
"""
ARGS = [
    argument("target", nargs="+", metavar="TARGET",
             help="model handles or variants names, folders, or demo: several compare as one result with "
                  "a model column"),
    argument("--variants", help="comma-separated variant names (default: torch and every ONNX variant)"),
    argument("--backends", default="auto",
             help="comma-separated: torch,onnxruntime,onnxruntime-cuda,onnxruntime-tensorrt,openvino,"
                  "torch-compile (default: torch for torch; onnxruntime, plus its GPU providers where present, "
                  "for ONNX)"),
    argument("--batch-sizes", help="comma-separated (default: %%config HFMagic.batch_sizes)"),
    argument("--seq-lens", help="comma-separated (default: %%config HFMagic.seq_lens)"),
    argument("--image-sizes", help="image models: comma-separated pixels per side (default: the image processor's)"),
    argument("--audio-seconds", help="speech models: comma-separated seconds of audio per clip (default 5)"),
    argument("--prompt-lens", dest="seq_lens",
             help="text-generation models: prompt lengths in tokens (the same as --seq-lens)"),
    argument("--new-tokens",
             help="text-generation models: tokens generated per run, greedy, no early stop; comma-separated for "
                  "several, each its own sweep (default 64)"),
    argument("--chat-template", action="store_true",
             help="text-generation models: each prompt a user's turn in the tokenizer's chat template (the prompt "
                  "lengths include it)"),
    argument("--threads", type=int, help="threads for every backend (default: %%config HFMagic.threads)"),
    argument("--warmup", type=int, default=10, help="warm-up runs per configuration (default 10)"),
    argument("--min-runs", type=int, default=10, help="at least this many timed runs (default 10)"),
    argument("--min-time", type=float, default=1.0, help="and at least this many seconds (default 1)"),
    argument("--budget", type=float, help="stop the sweep after this many seconds, saying what was skipped"),
    argument("--baseline",
             help="VARIANT[/BACKEND], or MODEL/VARIANT[/BACKEND] with several models, to compute speed-ups "
                  "against (default: the first model's torch)"),
    argument("--inputs", metavar="DATA", help="real texts: also time end to end, tokenizer included"),
    argument("--inline", action="store_true", help="measure in this process, not a worker"),
    CLUSTER_ARG,
    argument("--on", metavar="WHERE",
             help="the nodes to run on: resources a node has (GPU:1, xeon:1, accelerator_type:H100), "
                  "or each: once on every kind of node, side by side (default: the head node)"),
    argument("--order", default="interleaved", choices=["interleaved", "sequential"],
             help="interleaved (default): rounds visit every configuration in a fresh random order and "
                  "speed-ups are paired by round; sequential: one configuration after another"),
    argument("--max-time", type=float, help="seconds the interleaved rounds may take (default 120)"),
    argument("--ci-target", type=float, default=0.03,
             help="end the rounds once every speed-up's 95%% interval is within +- this fraction (0.03)"),
    argument("--timeout", type=float,
             help="seconds one shape may take before its worker is called hung (default 180 + 10 x min-time)"),
    argument("--force", action="store_true",
             help="measure shapes whose memory estimate exceeds the memory available (refused otherwise)"),
    argument("--no-widget", action="store_true", help="show the table, not the dashboard"),
] + OUTPUT_ARGS


def run(args, ctx):
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.models.handle import ModelHandle
    from hfmagic.models.variants import Variants

    data = ctx.lookup(args.inputs) if args.inputs else None
    if isinstance(data, (ModelHandle, Variants)):  # a model bound under the same name (demo): not data
        data = None
    live = ctx.live("benchmark")  # the dashboard shows progress itself; tqdm only without it
    result = benchmark(
        ctx.targets(args.target), variants=csv_list(args.variants, what="variant"),
        backends=None if args.backends == "auto" else csv_list(args.backends, what="backend"),
        batch_sizes=positive_ints(args.batch_sizes, "batch size"),
        seq_lens=positive_ints(args.seq_lens, "sequence length"),
        image_sizes=positive_ints(args.image_sizes, "image size"),
        audio_seconds=positive_ints(args.audio_seconds, "audio length"), threads=args.threads,
        warmup=args.warmup, min_runs=args.min_runs, min_time=args.min_time, budget=args.budget,
        baseline=args.baseline, inputs=data, inputs_source=args.inputs, inline=args.inline,
        timeout=args.timeout, order=args.order, max_time=args.max_time, ci_target=args.ci_target,
        callback=live, progress=not args.quiet and live is None, force=args.force,
        new_tokens=positive_ints(args.new_tokens, "new-token count"), chat_template=args.chat_template,
        cluster=args.cluster, on=args.on,
    )
    if args.name:
        ctx.bind(args.name, result)
    return result

