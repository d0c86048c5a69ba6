"""The commands shared by the magics and the command line.

Each command is a module with ``MAGIC`` (the magic's name), ``CLI`` (the subcommand's name),
``DOC``, ``ARGS`` (IPython ``magic_arguments.argument`` objects, so ``%benchmark?`` and
``hfmagic benchmark -h`` show the same help) and ``run(args, ctx)``, which calls one core function
and returns its result. A :class:`Context` tells the command where names come from and go to: the
user namespace in IPython, nothing but sources on the command line.
"""

from __future__ import annotations

from typing import Any, Callable

from IPython.core.magic_arguments import argument

from hfmagic.core.errors import UsageProblem

# options every result-producing command takes, as IPython's %timeit does
NAME_ARG = argument("--name", metavar="VAR", help="bind the result to this variable")
QUIET_ARG = argument("-q", "--quiet", action="store_true", help="show nothing")
OUTPUT_ARGS = [NAME_ARG, argument("-o", "--output", action="store_true", help="return the result object"),
               QUIET_ARG]
# %benchmark's and %evaluate's: where their workers run (hfmagic.cluster.connect)
CLUSTER_ARG = argument("--cluster", metavar="ADDRESS",
                       help="run the workers on this Ray cluster (HOST:PORT, ray://HOST:PORT, or auto; default "
                            "%%config HFMagic.cluster)")


def with_arguments(specs: list) -> Callable:
    """Apply ``magic_arguments.argument`` objects in the order they are listed."""

    def decorate(func):
        for spec in reversed(specs):
            func = spec(func)
        return func

    return decorate


def data_ref(ctx, text: str | None):
    """What ``--data``/``--inputs``/``--calibration TEXT`` names: the object the name binds (a
    DataFrame, a Dataset), or the text itself (a file, a named set such as ``demo``) where the name is
    unbound or binds what is not data: a module (``demo`` may name hfmagic.tasks.text.demo), a model
    or its variants (``%load_model demo`` binds ``demo``)."""
    if not text:
        return None
    from types import ModuleType

    from hfmagic.models.handle import ModelHandle
    from hfmagic.models.variants import Variants

    obj = ctx.lookup(text)
    return text if obj is None or isinstance(obj, (ModuleType, ModelHandle, Variants)) else obj


def csv_list(text: str | None, cast: Callable[[str], Any] = str, what: str = "value") -> list | None:
    """``"1,8"`` -> ``[1, 8]``; a clear error for a bad or empty item (``"1,,8"``, ``"1,8,"``)."""
    from hfmagic.core.listargs import as_list

    return as_list(text, cast, what)


def positive_ints(text: str | None, what: str) -> list[int] | None:
    values = csv_list(text, int, what)
    if values is not None and (not values or any(v <= 0 for v in values)):
        raise UsageProblem(f"{what}s must be positive whole numbers, got {text!r}")
    return values


class Context:
    """Where a command finds the objects it is given by name and puts what it makes."""

    interactive = False

    def lookup(self, ref: str) -> Any:
        """The object a name stands for, or None when it is not a name in scope."""
        return None

    def bind(self, name: str, obj: Any) -> None:
        """Make ``obj`` available under ``name`` (the user namespace in IPython)."""

    def model(self, ref: Any, task: str | None = None):
        """A model handle for a namespace name, a handle or model object, or a source."""
        from hfmagic.models.handle import ModelHandle, load_model

        obj = self.lookup(ref) if isinstance(ref, str) else ref
        if obj is None:
            return load_model(ref, task=task)
        if isinstance(obj, ModelHandle):
            return obj
        from hfmagic.models.variants import Variants

        if isinstance(obj, Variants):
            return obj.model
        return load_model(obj, task=task, name=ref if isinstance(ref, str) else None)

    def target(self, ref: Any):
        """A ``Variants`` or a ``ModelHandle`` (what benchmark and evaluate take)."""
        from hfmagic.models.variants import Variants

        obj = self.lookup(ref) if isinstance(ref, str) else ref
        if isinstance(obj, Variants):
            return obj
        return self.model(ref)

    def targets(self, refs: list[str]):
        """One target as itself, several as a list (one result with a model column). On the
        command line, two different folders with one name (``a/model``, ``b/model``) are told
        apart by their parent folders' names: there is no namespace to bind them under others."""
        found = [self.target(ref) for ref in refs]
        if len(found) == 1:
            return found[0]
        return found if self.interactive else _named_apart(found)

    def show(self, result: Any) -> None:
        print(result)

    def live(self, kind: str) -> Callable[[dict], None] | None:
        """A callback that shows rows as they finish (the notebook dashboard), or None."""
        return None


# the magics, in the order %hfmagic help lists them; each module is imported when needed
COMMAND_MODULES = [
    "hfmagic.surface.commands.load",
    "hfmagic.surface.commands.export",
    "hfmagic.surface.commands.benchmark",
    "hfmagic.surface.commands.evaluate",
    "hfmagic.surface.commands.optimize",
    "hfmagic.surface.commands.serve",
    "hfmagic.surface.commands.loadtest",
    "hfmagic.surface.commands.admin",
]


def _named_apart(targets: list) -> list:
    import dataclasses

    from hfmagic.models.handle import ModelHandle, derive_name

    names = [t.name for t in targets if isinstance(t, ModelHandle)]
    out = []
    for t in targets:
        if isinstance(t, ModelHandle) and names.count(t.name) > 1:
            t = dataclasses.replace(t, name=derive_name(f"{t.path.parent.name}_{t.name}"))
        out.append(t)
    return out
