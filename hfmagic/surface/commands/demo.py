"""``hfmagic demo`` (``make demo``): the quickstart end to end on both built-in models, headless."""

from IPython.core.magic_arguments import argument

MAGIC = None
CLI = "demo"
DOC = """Run the quickstart end to end on the two built-in BBC News classifiers, demo (MiniLM's 6
layers) and demo-small (its layers 0, 1 and 5), next to a TF-IDF + logistic-regression baseline: load, export (fp32 and its int8 twin for this CPU), benchmark
both models in one sweep, evaluate both on the same held-out articles, then print the summary per
model and variant and write one HTML report of both."""
ARGS = [
    argument("--rebuild", action="store_true", help="rebuild both built-in models from their recipes first"),
    argument("--min-time", type=float, default=1.0, help="seconds of timing per configuration (default 1)"),
    argument("--limit", type=int, help="evaluate the first N held-out articles only (default: all 445)"),
    argument("--html", metavar="FILE", help="where to write the report (default: reports/ in the cache folder)"),
]


def run(args, ctx):
    from hfmagic.core.config import settings
    from hfmagic.core.errors import UsageProblem

    if not settings().store:
        raise UsageProblem("the demo writes its report from the run store, which is turned off "
                           "(HFMagic.store = False); turn it on to run the demo")
    from hfmagic.tasks.text import demo
    from hfmagic.benchmarking.api import benchmark
    from hfmagic.evaluation.api import evaluate
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model
    from hfmagic.runs.report import write_report

    def step(text):
        print(f"\n== {text}", flush=True)

    names = ["demo", "demo-small"]
    if args.rebuild:
        for name in names:
            demo.build(force=True, name=name)
    step("1/5 load the two built-in classifiers (each built once from PyPI packages, a few minutes)")
    models = [load_model(name) for name in names]
    for model in models:
        ctx.show(model)
    # the classical baseline first lessons recommend: is a transformer worth its cost at all?
    baseline = load_model("tfidf", data="demo")
    ctx.show(baseline)
    step("2/5 export each to ONNX: fp32 and its int8 twin for this CPU, validated against PyTorch")
    exported = [export_onnx(model, levels=["fp32"]) for model in models]
    for variants in exported:
        ctx.show(variants)
    step("3/5 benchmark torch, fp32 and int8 of both models and the TF-IDF baseline (end to end per text) in "
         "one interleaved sweep at batch 1, sequence 128")
    bench = benchmark([*exported, baseline], variants=["torch", "fp32", "int8"], batch_sizes=[1],
                      seq_lens=[128], min_time=args.min_time)
    ctx.show(bench)
    step(f"4/5 evaluate both models and the baseline on {args.limit or 'all'} held-out articles against the "
         "demo's PyTorch")
    ev = evaluate([*exported, baseline], limit=args.limit)
    ctx.show(ev)
    step("5/5 the report of both models")
    report = write_report([*(v.run_id for v in exported), bench.run_id, ev.run_id], args.html,
                          title="hfmagic demo: two BBC News classifiers (all-MiniLM-L6-v2, 6 and 3 layers)")
    ctx.show(report)
    return report
