"""``%optimize MODEL --data D``: the fastest variant x backend that keeps the accuracy, found by search."""


from IPython.core.magic_arguments import argument

from hfmagic.surface.commands import OUTPUT_ARGS, csv_list, data_ref
from hfmagic.core.errors import UsageProblem

MAGIC = "optimize"
CLI = "optimize"
DOC = """Search optimization levels x quantization recipes (dynamic int8 per-channel and per-tensor,
static int8 with MinMax, Entropy and Percentile calibration, NNCF's static int8; int4 for decoders)
x backends x thread counts for the fastest configuration that keeps --keep of the reference's
accuracy: build (a static int8 that diverges gets a sensitivity pass), screen in short interleaved
sweeps, evaluate fastest first (on the runtime each was timed on), confirm in a full sweep against
the fixed recipes. Ends with the winner, the Pareto front, the trace of what was dropped and why,
and the recipe that rebuilds it. --objective serve then serves the passing candidates on Ray Serve
(replicas x dynamic batching) and load-tests each for the most requests/s inside --slo-p99.
"""
ARGS = [
    argument("target", metavar="MODEL", help="a model handle, folder, hub id or demo"),
    argument("--data", help="the labelled data the gate scores (what %%evaluate --data takes; default the model's own "
                            "held-out split)"),
    argument("--keep", default="99%", help="the share of the reference's first metric to keep (default 99%%)"),
    argument("--objective", default="p50", choices=["p50", "p95", "throughput", "tpot", "serve"],
             help="what the winner is fastest at (default p50; tpot: a decoder's time per output token; serve: the "
                  "most requests/s inside --slo-p99, served on Ray Serve)"),
    argument("--slo-p99", help="with --objective serve: the p99 budget of a served request, e.g. 100ms"),
    argument("--serve-duration", type=float, help="with --objective serve: seconds per load-tested rate (default 5)"),
    argument("--shape", default=None, metavar="BxS",
             help="batch x the task's size (tokens, pixels, seconds) measured, e.g. 1x128 (default 1 x the "
                  "task's first default size); the gate scores every candidate at that batch"),
    argument("--budget", type=float, help="seconds for the whole search; it stops and reports what it found"),
    argument("--backends", help="comma-separated backends to search (default: onnxruntime, openvino and torch.compile "
                                "where they work, and torch)"),
    argument("--threads", help="thread counts to search, e.g. 1,2 or 4 (default: 1, half and all of "
                               "%%config HFMagic.threads)"),
    argument("--calibration", metavar="DATA", help="examples for static int8 (default: the first --samples of --data)"),
    argument("--samples", type=int, default=100, help="calibration examples for static int8 (default 100)"),
    argument("--limit", type=int, help="evaluate the first N examples only"),
    argument("--min-time", type=float, default=1.0, help="seconds of timing per configuration when confirming"),
] + OUTPUT_ARGS


def run(args, ctx):
    from hfmagic.optimizing.api import optimize

    data, calibration = data_ref(ctx, args.data), data_ref(ctx, args.calibration)
    batch, size = _shape(args.shape)
    result = optimize(
        ctx.model(args.target), data=data, keep=_percent(args.keep), objective=args.objective, batch_size=batch,
        size=size, budget=args.budget, backends=csv_list(args.backends, what="backend"), threads=csv_list(args.threads, int, what="thread count"),
        calibration=calibration, samples=args.samples,
        progress=not args.quiet, min_time=args.min_time, limit=args.limit, slo_p99=args.slo_p99,
        serve_duration=args.serve_duration,
    )
    if args.name:
        ctx.bind(args.name, result)
    return result


def _percent(text: str) -> float:
    try:
        return float(str(text).strip().rstrip("%"))
    except ValueError:
        raise UsageProblem(f"--keep takes a percentage such as 99% or 99.5, got {text!r}") from None


def _shape(text: str | None) -> tuple[int, int | None]:
    if not text:
        return 1, None
    batch, sep, size = text.lower().partition("x")
    if not sep or not batch.isdigit() or not size.isdigit() or int(batch) <= 0 or int(size) <= 0:
        raise UsageProblem(f"--shape takes BATCHxSIZE in positive whole numbers, e.g. 1x128, got {text!r}")
    return int(batch), int(size)
