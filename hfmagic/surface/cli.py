"""The ``hfmagic`` command: the magics' commands as subcommands, with the same arguments."""

from __future__ import annotations

import importlib
import sys

from IPython.core.error import UsageError

from hfmagic.surface.commands import COMMAND_MODULES, Context
from hfmagic.surface.commands.admin import SUBCOMMANDS, ShowHelp, parser_for, subcommand
from hfmagic.core.errors import HFMagicError

CLI_MODULES = [m for m in COMMAND_MODULES if not m.endswith(".admin")] + ["hfmagic.surface.commands.demo"]


class CliContext(Context):
    """On the command line every name is a source (a folder, a hub id, demo, a data file)."""

    def show(self, result):
        print(result, flush=True)


def commands() -> dict:
    table = {}
    for module in CLI_MODULES:
        cmd = importlib.import_module(module)
        table[cmd.CLI] = cmd
    for name in SUBCOMMANDS:
        table[name] = name  # resolved lazily: the run store's modules are only imported when used
    return table


def usage(table: dict) -> str:
    lines = ["usage: hfmagic COMMAND [ARGS]   (hfmagic COMMAND -h for its arguments)", "", "commands:"]
    for name, cmd in table.items():
        doc = (cmd.DOC if not isinstance(cmd, str) else subcommand(cmd).DOC).strip().splitlines()[0]
        lines.append(f"  {name:<10} {doc}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    table = commands()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(table))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in table:
        print(f"hfmagic: unknown command {name!r}; use one of: {', '.join(table)}", file=sys.stderr)
        return 2
    cmd = table[name] if not isinstance(table[name], str) else subcommand(name)
    ctx = CliContext()
    try:
        args = parser_for(cmd, f"hfmagic {name}").parse_args(rest)
        result = cmd.run(args, ctx)
    except ShowHelp as shown:
        print(shown, end="")
        return 0
    except (UsageError, HFMagicError) as exc:
        print(f"hfmagic: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hfmagic: interrupted", file=sys.stderr)
        return 130
    if result is not None and not getattr(args, "quiet", False) and name != "demo":
        ctx.show(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
