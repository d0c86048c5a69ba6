"""``%load_model SOURCE``: load a model and bind a handle to it."""

from IPython.core.magic_arguments import argument

from hfmagic.commands import OUTPUT_ARGS
from hfmagic.models import ModelHandle, load_model

MAGIC = "load_model"
CLI = "load"
DOC = """Load a Hugging Face model and bind a handle to it.

SOURCE is a folder saved with save_pretrained, a hub id (needs the hub), the name of a
transformers model or pipeline in the namespace, or `demo` (a BBC News classifier built
offline from all-MiniLM-L6-v2, with its held-out test split as `.dataset`).
"""
ARGS = [
    argument("source", help="folder, hub id, variable name, or demo"),
    argument("--task", help="task to load it for: text-classification, token-classification, question-answering, "
                            "feature-extraction, or a task plugin's name (default: from its config)"),
    argument("--revision", help="hub revision (branch, tag or commit)"),
    argument("--trust-remote-code", action="store_true",
             help="run code from the model's repository (off unless given)"),
] + OUTPUT_ARGS


def run(args, ctx):
    obj = ctx.lookup(args.source)
    source = args.source if obj is None else obj
    # a model object keeps its own name; the handle gets one beside it (a handle keeps its name)
    beside = obj is not None and not isinstance(obj, ModelHandle)
    handle = load_model(source, task=args.task, revision=args.revision,
                        trust_remote_code=args.trust_remote_code,
                        name=args.name or (f"{args.source}_model" if beside else None))
    ctx.bind(handle.name, handle)
    return handle
