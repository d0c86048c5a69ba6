"""``%load_model SOURCE``: load a model and bind a handle to it."""

from pathlib import Path
from types import ModuleType

from IPython.core.magic_arguments import argument

from hfmagic.surface.commands import OUTPUT_ARGS
from hfmagic.core.errors import UsageProblem
from hfmagic.models.handle import ModelHandle, load_model, reload

MAGIC = "load_model"
CLI = "load"
DOC = """Load a Hugging Face model and bind a handle to it.

SOURCE is a folder saved with save_pretrained, a hub id (needs the hub), the name of a
transformers model or pipeline in the namespace, or `demo` (a BBC News classifier built
offline from all-MiniLM-L6-v2, with its held-out test split as `.dataset`), `demo-small` (its
3-layer sibling), or `tfidf --data D`: a classical TF-IDF + logistic-regression baseline trained on
D's training split, which benchmarks and evaluates like any other text classifier. The name of a
loaded model reads its folder again (after save_pretrained of new weights there, say); a name that
is also a folder here loads the folder.
"""
ARGS = [
    argument("source", help="folder, hub id, variable name, or demo"),
    argument("--task", help="task to load it for: text-classification, token-classification, question-answering, "
                            "feature-extraction, or a task plugin's name (default: from its config)"),
    argument("--revision", help="hub revision (branch, tag or commit)"),
    argument("--gguf-file", metavar="FILE", help="a hub repository of GGUF files: the one to load (dequantised once)"),
    argument("--trust-remote-code", action="store_true",
             help="run code from the model's repository (off unless given)"),
    argument("--data", metavar="DATA",
             help="tfidf only: the labelled texts a TF-IDF + logistic-regression baseline trains on (a "
                  "DataFrame/Dataset name, a file, or demo); it trains on their training split"),
    argument("--text-column", help="tfidf only: the column with the texts (guessed when obvious)"),
    argument("--label-column", help="tfidf only: the column with the labels (guessed when obvious)"),
] + OUTPUT_ARGS


def run(args, ctx):
    """``%load_model X`` is a request to (re)load X. A bound handle is read again from its folder
    (weights saved there since get a new hash and a new PyTorch model), under the same name. A
    name that is both a variable and a folder here means the folder; a variable that is not a
    handle (a model, a pipeline, a DataFrame) is never overwritten: the handle goes beside it."""
    obj = None if args.data else ctx.lookup(args.source)  # --data: the tfidf baseline, trained again
    data = ctx.lookup(args.data) if args.data else None
    from hfmagic.models.variants import Variants

    # `demo` may name the hfmagic.tasks.text.demo module, or a model bound under that name: the data is meant
    if data is None or isinstance(data, (ModuleType, ModelHandle, Variants)):
        data = args.data
    bound = isinstance(obj, ModelHandle)
    here = Path(args.source).expanduser()
    if obj is None:
        handle = _load(args, args.source, data, args.name)
    elif here.exists() and not (bound and here.resolve() == obj.path):  # the folder is meant
        handle = _load(args, args.source, data, args.name or (args.source if bound else f"{args.source}_model"))
    elif bound:
        if args.revision or args.gguf_file:
            raise UsageProblem(f"{args.source} is a loaded model; --revision and --gguf-file choose what a hub id "
                               f"loads: pass the id ({obj.source}) instead")
        handle = reload(obj, task=args.task, name=args.name or args.source, trust_remote_code=args.trust_remote_code)
    else:  # a model or pipeline object: saved to the cache, its handle beside it
        handle = _load(args, obj, data, args.name or f"{args.source}_model")
    ctx.bind(handle.name, handle)
    return handle


def _load(args, source, data, name):
    return load_model(source, task=args.task, revision=args.revision, gguf_file=args.gguf_file,
                      trust_remote_code=args.trust_remote_code, data=data, text_column=args.text_column,
                      label_column=args.label_column, name=name)
