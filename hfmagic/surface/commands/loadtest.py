"""``%loadtest TARGET --rates 5,10,20``: latency under an open-loop stream of requests."""

from IPython.core.magic_arguments import argument

from hfmagic.surface.commands import OUTPUT_ARGS, csv_list, data_ref

MAGIC = "loadtest"
CLI = "loadtest"
DOC = """Send real examples to a served endpoint (a handle from %serve, or any URL) at each offered
rate as an open-loop stream (Poisson arrivals by default), measuring each request's latency from its
intended send time, so a server's queue shows. Per rate: offered and achieved requests/s,
p50/p90/p99/max latency, the server's own median, errors by kind, and how late the generator's
own sends were (a rate it could not keep to is marked). Then the knee and the highest rate inside
the --slo-p99. A served decoder streams its tokens: TTFT and TPOT percentiles under load too, the
SLO judged on TTFT. Several targets are compared in one result. Ctrl-C keeps every finished rate.
"""
ARGS = [
    argument("targets", metavar="TARGET", nargs="+", help="served handles (from %%serve) or URLs"),
    argument("--rates", default="5,10,20,40", help="requests per second, comma-separated (default 5,10,20,40)"),
    argument("--duration", type=float, default=30.0, help="seconds per rate (default 30)"),
    argument("--slo-p99", help="the p99 latency budget, e.g. 100ms or 0.1s"),
    argument("--data", help="the examples to send (what %%evaluate --data takes for the model's task; default its "
                            "task's samples)"),
    argument("--new-tokens", type=int, help="a served decoder's new tokens per request (default 64)"),
    argument("--arrival", default="poisson", choices=["poisson", "constant"],
             help="arrivals: poisson (exponential gaps; default) or constant"),
    argument("--timeout", type=float, default=30.0, help="seconds a request may take before it counts as a timeout"),
    argument("--price-per-hour", type=float, help="the machine's price per hour: the cost per million requests"),
] + OUTPUT_ARGS


def run(args, ctx):
    from hfmagic.serving.loadtest import loadtest

    targets = [ctx.lookup(t) or t for t in args.targets]
    data = data_ref(ctx, args.data)
    result = loadtest(targets, rates=csv_list(args.rates, float, "rate"), duration=args.duration,
                      slo_p99=args.slo_p99, data=data, arrival=args.arrival,
                      timeout=args.timeout, price_per_hour=args.price_per_hour, progress=not args.quiet,
                      new_tokens=args.new_tokens)
    if args.name:
        ctx.bind(args.name, result)
    return result
