"""``%hfmagic SUBCOMMAND``: help, status, and the run-store subcommands, routed through a dict."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import os
from pathlib import Path

from IPython.core.magic_arguments import MagicHelpFormatter, argument, magic_arguments

from hfmagic.surface.commands import with_arguments
from hfmagic.core.config import CACHE_ENV, settings, unwritable_folder
from hfmagic.core.results import key_value_table

MAGIC = "hfmagic"
CLI = None
DOC = """hfmagic's own commands: `%hfmagic help`, `%hfmagic status`, and those of the run store.

Settings: `%config HFMagic` lists them, `%config HFMagic.threads = 2` sets one.
"""
ARGS = [
    argument("subcommand", nargs="?", default="help", help="help, status, or a run-store command"),
    argument("rest", nargs="...", help="the subcommand's own arguments"),
]

# subcommand name -> module with DOC, ARGS and run(args, ctx); the run store adds its own
SUBCOMMANDS: dict[str, str] = {
    "status": "hfmagic.surface.commands.admin:Status",
    "runs": "hfmagic.surface.commands.runs:Runs",
    "compare": "hfmagic.surface.commands.runs:Compare",
    "rerun": "hfmagic.surface.commands.runs:Rerun",
    "report": "hfmagic.surface.commands.runs:Report",
    "tag": "hfmagic.surface.commands.runs:Tag",
    "delete": "hfmagic.surface.commands.runs:Delete",
    "gc": "hfmagic.surface.commands.runs:Gc",
    "store": "hfmagic.surface.commands.runs:Store",
}

STACK = ["torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "evaluate",
         "datasets", "scikit-learn", "openvino", "anywidget", "ipython"]


class Status:
    DOC = "Settings, the cache folder and the installed stack (read without importing it)."
    ARGS: list = []

    @staticmethod
    def run(args, ctx):
        from hfmagic.core.version import __version__

        s = settings()
        cache = Path(s.cache_dir).expanduser()
        why_not = unwritable_folder(cache)  # shown, not raised: status is where the user looks for why
        shown = str(cache) + (f" (not usable: {why_not}; set HFMagic.cache_dir or {CACHE_ENV} to a folder you "
                              "can write in)" if why_not else "")
        pairs = [("hfmagic", __version__), ("cache folder", shown),
                 ("threads", f"{s.threads} (0: one per physical core = {s.resolved_threads()})"),
                 ("batch sizes", ",".join(map(str, s.batch_sizes))),
                 ("sequence lengths", ",".join(map(str, s.seq_lens))),
                 ("widget", "on (results as the dashboard where the front end can)" if s.widget else "off (tables)")]
        from hfmagic.store.db import STORE_ENV, recording_off, store_path

        if recording_off():
            why = "HFMagic.store = False" if not s.store else f"{STORE_ENV}={os.environ.get(STORE_ENV)}"
            pairs.append(("run store", f"off ({why})"))
        elif why_not and not s.store_path:
            pairs.append(("run store", "cannot record: its file goes in the cache folder, which is not usable"))
        else:
            pairs.append(("run store", f"recording to {store_path()}"))
        for dist in STACK:
            try:
                pairs.append((dist, md.version(dist)))
            except md.PackageNotFoundError:
                pairs.append((dist, "not installed"))
        return key_value_table("hfmagic status", pairs)


def subcommand(name: str):
    """The object behind a subcommand name, or None."""
    target = SUBCOMMANDS.get(name)
    if target is None:
        return None
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


class ShowHelp(Exception):
    """``-h``/``--help`` was given: ``str(exc)`` is the command's help, shown instead of running it
    (the magics print it, the command line prints it and exits 0)."""


class _HelpAction(argparse.Action):
    """argparse's ``-h``, raising :class:`ShowHelp` rather than exiting: IPython's magic parsers have
    none (``add_help=False``), and a magic must not exit the kernel."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        raise ShowHelp(parser.format_help())


HELP_ARG = argument("-h", "--help", action=_HelpAction, help="show this help and do nothing else")


class UsageFormatter(MagicHelpFormatter):
    """IPython's help layout with a plain ``usage: PROG`` line (its own writes ``::`` and ``%`` for
    the docstring ``%benchmark?`` shows), for ``-h`` on the command line and in the magics."""

    def add_usage(self, usage, actions, groups, prefix="usage: "):
        super(MagicHelpFormatter, self).add_usage(usage, actions, groups, prefix)


def parser_for(cmd, prog: str):
    """The argument parser of a command object (the same one its magic uses), with ``-h``."""

    def command(*_):
        pass

    command.__doc__ = cmd.DOC
    command = magic_arguments()(with_arguments([*cmd.ARGS, HELP_ARG])(command))
    command.parser.prog = prog
    command.parser.formatter_class = UsageFormatter
    return command.parser


def help_text() -> str:
    from hfmagic.surface.commands import COMMAND_MODULES

    lines = ["hfmagic magics:"]
    for mod in COMMAND_MODULES:
        cmd = importlib.import_module(mod)
        lines.append(f"  %{cmd.MAGIC:<12} {cmd.DOC.strip().splitlines()[0]}")
    lines.append("  %hfmagic SUB  where SUB is help, " + ", ".join(SUBCOMMANDS))
    lines.append("Add ? for a magic's full help (%benchmark?). Settings: %config HFMagic")
    return "\n".join(lines)


class Help(str):
    def __repr__(self) -> str:
        return str(self)


def parse_subcommand(args):
    """The subcommand's object and its own arguments: ``args.rest``, the words of the magic's line
    after the subcommand's name, split (and a trailing comment left out) as every magic's line is."""
    cmd = subcommand(args.subcommand)
    if cmd is None:
        from hfmagic.core.errors import UsageProblem

        raise UsageProblem(f"unknown subcommand {args.subcommand!r}; use one of: help, "
                           + ", ".join(SUBCOMMANDS))
    return cmd, parser_for(cmd, f"%hfmagic {args.subcommand}").parse_args(args.rest)


def run(args, ctx):
    if args.subcommand == "help":
        return Help(help_text())
    cmd, sub_args = parse_subcommand(args)
    return cmd.run(sub_args, ctx)
