"""``%evaluate MODEL_OR_VARIANTS --data SOURCE``: accuracy of every variant, with intervals and flips."""

from IPython.core.magic_arguments import argument

from hfmagic.commands import OUTPUT_ARGS, csv_list

MAGIC = "evaluate"
CLI = "evaluate"
DOC = """Evaluate every variant on a labelled dataset: metrics with bootstrap 95% intervals, the
percentage of the reference kept (99% gate), prediction flips and eval throughput.
"""
ARGS = [
    argument("target", help="a model handle or variants name, a folder, or demo"),
    argument("--data", required=True,
             help="a DataFrame or Dataset name, a CSV/JSON/JSONL/Parquet file, a hub dataset id, or demo"),
    argument("--split", help="dataset split (hub datasets; default test)"),
    argument("--text-column", help="column with the texts (guessed when obvious)"),
    argument("--label-column", help="column with the labels (guessed when obvious)"),
    argument("--metrics", default="accuracy,f1_macro",
             help="comma-separated: accuracy, precision/recall/f1 _macro/_micro/_weighted, mcc, "
                  "evaluate:NAME or a local metric path (default accuracy,f1_macro)"),
    argument("--variants", help="comma-separated variant names (default: all)"),
    argument("--limit", type=int, help="evaluate the first N examples only"),
    argument("--batch-size", type=int, default=32, help="batch size (default 32)"),
    argument("--reference", default="torch", help="the variant others are compared with (default torch)"),
    argument("--no-widget", action="store_true", help="show the table, not the dashboard"),
] + OUTPUT_ARGS


def run(args, ctx):
    from hfmagic.evaluate import evaluate

    data = ctx.lookup(args.data)
    result = evaluate(
        ctx.target(args.target), data=args.data if data is None else data, split=args.split,
        text_column=args.text_column, label_column=args.label_column,
        metrics=csv_list(args.metrics, what="metric"), variants=csv_list(args.variants, what="variant"),
        limit=args.limit, batch_size=args.batch_size, reference=args.reference,
    )
    if args.name:
        ctx.bind(args.name, result)
    return result
