"""``%serve VARIANTS --variant V``: a variant behind an HTTP endpoint on Ray Serve (127.0.0.1)."""

from IPython.core.magic_arguments import argument

from hfmagic.surface.commands import OUTPUT_ARGS

MAGIC = "serve"
CLI = "serve"
DOC = """Serve one variant of a model behind a real HTTP endpoint on Ray Serve, on a Ray cluster of
this machine's own bound to 127.0.0.1 (or the one given with --cluster): --replicas copies, Ray Serve's dynamic batching (up to
--max-batch requests, waiting --batch-wait-ms for more). POST JSON {"inputs": EXAMPLE} to the URL
it shows (a text; a question and its context; an image or audio file in base64, or the file as the
body; a prompt, whose tokens stream back); the answer is %evaluate's prediction, the replica's own
time for the request and the batch it ran in. Each configuration is served at a route of its own, so several can run side by side
(%loadtest compares them). --stop [NAME] stops one, or every one; all stop with the kernel.
"""
ARGS = [
    argument("target", metavar="VARIANTS", nargs="?", help="the variants from %%export_onnx (or a model: torch)"),
    argument("--variant", help="the variant to serve (default fp32)"),
    argument("--backend", help="the backend each replica runs it on (default: onnxruntime for ONNX, torch for torch)"),
    argument("--replicas", type=int, default=1, help="copies of the variant, each a Ray actor (default 1)"),
    argument("--max-batch", type=int, default=1, help="dynamic batching: the most requests run as one batch "
                                                      "(default 1: none)"),
    argument("--batch-wait-ms", type=float, default=0.0,
             help="dynamic batching: how long a replica waits for more requests before it runs a batch (default 0)"),
    argument("--threads", type=int, default=1, help="threads per replica (default 1)"),
    argument("--port", type=int, help="Ray Serve's HTTP port on 127.0.0.1 (default: a free one; one per kernel)"),
    argument("--route", dest="route", help="the URL path (default model-variant-rN-bB)"),
    argument("--delay-ms", type=float, default=0.0, help="make every batch this much slower (to try a load test on a "
                                                         "slow server)"),
    argument("--cluster", metavar="ADDRESS", help="serve on this Ray cluster (HOST:PORT, ray://HOST:PORT or auto) "
                                                  "instead of this machine's own; Serve's proxy listens on its head"),
    argument("--stop", nargs="?", const="*", metavar="NAME", help="stop the configuration served as NAME (or every "
                                                                  "one)"),
] + OUTPUT_ARGS


def run(args, ctx):
    from hfmagic.core.errors import UsageProblem
    from hfmagic.serving.api import serve, stop

    if args.stop is not None:
        names = stop(None if args.stop == "*" else args.stop)
        print(f"stopped: {', '.join(names) or 'nothing was served'}")
        return None
    if not args.target:
        raise UsageProblem("%serve needs the variants to serve (v = %export_onnx MODEL; %serve v), or --stop")
    result = serve(ctx.target(args.target), variant=args.variant, replicas=args.replicas, max_batch=args.max_batch,
                   batch_wait_ms=args.batch_wait_ms, backend=args.backend, threads=args.threads, port=args.port,
                   name=args.route, delay_ms=args.delay_ms, cluster=args.cluster)
    if args.name:
        ctx.bind(args.name, result)
    if not ctx.interactive:  # the command line: it serves until Ctrl-C, then takes Ray down
        import time

        from hfmagic.serving.api import stop_all

        ctx.show(result)
        print("serving until Ctrl-C", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return None
        finally:
            stop_all()
    return result
