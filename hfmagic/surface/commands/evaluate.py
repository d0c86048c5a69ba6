"""``%evaluate MODEL_OR_VARIANTS --data SOURCE``: accuracy of every variant, with intervals and flips."""

from collections.abc import Mapping

from IPython.core.magic_arguments import argument

from hfmagic.surface.commands import CLUSTER_ARG, OUTPUT_ARGS, csv_list, data_ref, positive_ints

MAGIC = "evaluate"
CLI = "evaluate"
DOC = """Evaluate every variant on a labelled dataset: metrics with bootstrap 95% intervals, the
percentage of the reference kept (99% gate), prediction flips and eval throughput.
"""
ARGS = [
    argument("target", nargs="+", metavar="TARGET",
             help="model handles or variants names, folders, or demo: several compare as one result with "
                  "a model column"),
    argument("--data",
             help="a DataFrame or Dataset name, a CSV/JSON/JSONL/Parquet file, a hub dataset id, or demo; "
                  "token classification: CoNLL text (token<TAB>tag) or wnut16; question answering: SQuAD "
                  "JSON or squad-bbc; image classification: a folder of class folders (label/x.png), a "
                  "DataFrame/Dataset with an image column, digits or fashion-mnist (default: the model's own "
                  "held-out split, as the demos have); speech recognition: a folder of audio files with a "
                  "transcripts.txt (name<TAB>text), a Dataset with audio and text columns, or librivox"),
    argument("--split", help="dataset split (hub datasets; default test)"),
    argument("--text-column", help="column with the texts (guessed when obvious)"),
    argument("--image-column", help="image classification: column with the images (guessed when obvious)"),
    argument("--audio-column", help="speech recognition: column with the audio (guessed when obvious)"),
    argument("--label-column", help="column with the labels (guessed when obvious)"),
    argument("--label-map", metavar="MAP",
             help="how the data's labels map to the model's: a dict variable, a dict literal "
                  "('{\"0\": \"business\"}'), a JSON file, or ids (the labels are the model's class ids, "
                  "strings of digits included)"),
    argument("--metrics",
             help="comma-separated: accuracy, precision/recall/f1 _macro/_micro/_weighted, mcc, "
                  "evaluate:NAME or a local metric script path; cosine for feature-extraction models; "
                  "f1,precision,recall,accuracy (entity level) for token classification; f1,exact_match "
                  "for question answering (default: the task's)"),
    argument("--variants", help="comma-separated variant names (default: all)"),
    argument("--limit", type=int, help="evaluate the first N examples only"),
    argument("--batch-size", metavar="B",
             help="the batch size to score at, or sizes (1,8); each batch is padded to its own longest example "
                  "(default: variants whose predictions depend on the batch, as dynamic int8's do, at 1, what a "
                  "single request runs at; the others at 32. A list scores those at each size and shows the "
                  "worst, the others at the largest)"),
    argument("--reference", default="torch",
             help="the variant others are compared with: VARIANT, or MODEL/VARIANT with several models "
                  "(default: the first model's torch)"),
    argument("--max-tokens", type=int, metavar="N",
             help="text-generation: perplexity over the data's first N tokens (default 2048)"),
    argument("--chat-template", action="store_true",
             help="text-generation: give each greedy prompt as a user's turn in the tokenizer's chat template"),
    argument("--backend", choices=["onnxruntime", "openvino"],
             help="what the ONNX variants run on (default onnxruntime; a QDQ file's int8 is the runtime's own)"),
    argument("--no-widget", action="store_true", help="show the table, not the dashboard"),
    CLUSTER_ARG,
    argument("--on", metavar="WHERE",
             help="the nodes its shards run on: resources a node has (GPU:1, xeon:1, "
                  "accelerator_type:H100; default: any node)"),
] + OUTPUT_ARGS


def run(args, ctx):
    from hfmagic.evaluation.api import evaluate

    data = data_ref(ctx, args.data)
    result = evaluate(
        ctx.targets(args.target), data=data, split=args.split,
        text_column=args.text_column, image_column=args.image_column, audio_column=args.audio_column,
        label_column=args.label_column, label_map=_label_map(args.label_map, ctx),
        metrics=csv_list(args.metrics, what="metric"), variants=csv_list(args.variants, what="variant"),
        limit=args.limit, batch_size=positive_ints(args.batch_size, "batch size"), reference=args.reference, chat_template=args.chat_template,
        max_tokens=args.max_tokens, cluster=args.cluster, on=args.on, backend=args.backend,
        callback=None if args.no_widget else ctx.live("evaluate"), progress=not args.quiet,
    )
    if args.name:
        ctx.bind(args.name, result)
    return result


def _label_map(text: str | None, ctx):
    """A dict variable by its name; otherwise the text, read by hfmagic.data.labels.read_label_map."""
    if not text:
        return None
    found = ctx.lookup(text)
    return found if isinstance(found, Mapping) else text

