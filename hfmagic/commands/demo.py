"""``hfmagic demo`` (``make demo``): the quickstart end to end on the demo model, headless."""

from IPython.core.magic_arguments import argument

MAGIC = None
CLI = "demo"
DOC = """Run the quickstart end to end on the demo BBC News classifier: load, export (fp32, O2 and
their int8 twins), benchmark, evaluate, then print the summary table and write the HTML report."""
ARGS = [
    argument("--rebuild", action="store_true", help="rebuild the demo model from its recipe first"),
    argument("--min-time", type=float, default=1.0, help="seconds of timing per configuration (default 1)"),
    argument("--limit", type=int, help="evaluate the first N held-out articles only (default: all 445)"),
    argument("--html", metavar="FILE", help="where to write the report (default: reports/ in the cache folder)"),
]


def run(args, ctx):
    from hfmagic.config import settings
    from hfmagic.errors import UsageProblem

    if not settings().store:
        raise UsageProblem("the demo writes its report from the run store, which is turned off "
                           "(HFMagic.store = False); turn it on to run the demo")
    from hfmagic import demo
    from hfmagic.benchmarking import benchmark
    from hfmagic.evaluation import evaluate
    from hfmagic.export import export_onnx
    from hfmagic.models import load_model
    from hfmagic.report import write_report

    def step(text):
        print(f"\n== {text}", flush=True)

    if args.rebuild:
        demo.build(force=True)
    step("1/5 load the demo classifier (built once from PyPI packages, about a minute)")
    model = load_model("demo")
    ctx.show(model)
    step("2/5 export to ONNX: fp32, O2 (fused) and an int8 twin of each for this CPU, validated against PyTorch")
    variants = export_onnx(model, levels=["fp32", "O2"])
    ctx.show(variants)
    step("3/5 benchmark every variant at batch 1, sequence 128")
    bench = benchmark(variants, batch_sizes=[1], seq_lens=[128], min_time=args.min_time)
    ctx.show(bench)
    step(f"4/5 evaluate every variant on {args.limit or 'all'} held-out articles against PyTorch")
    ev = evaluate(variants, limit=args.limit)
    ctx.show(ev)
    step("5/5 the report")
    report = write_report([variants.run_id, bench.run_id, ev.run_id], args.html,
                          title="hfmagic demo: BBC News classifier (all-MiniLM-L6-v2)")
    ctx.show(report)
    return report
