"""``hfmagic demo``: the main job on the embedded default model, printed step by step."""

from IPython.core.magic_arguments import argument

MAGIC = None
CLI = "demo"
DOC = """Build (once) and load the demo BBC News classifier, then run hfmagic's loop on it and print
what each step found."""
ARGS = [argument("--rebuild", action="store_true", help="rebuild the demo model from its recipe")]


def run(args, ctx):
    from hfmagic import demo
    from hfmagic.models import load_model

    if args.rebuild:
        demo.build(force=True)
    handle = load_model("demo")
    ctx.show(handle)
    return handle
