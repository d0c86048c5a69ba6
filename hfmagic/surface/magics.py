"""The IPython magics: each parses its line, calls one command, then shows, binds or returns."""

from __future__ import annotations

import importlib
import keyword

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class
from IPython.core.magic_arguments import magic_arguments

from hfmagic.surface.argline import split_line, split_path
from hfmagic.surface.commands import COMMAND_MODULES, Context, with_arguments
from hfmagic.surface.commands.admin import HELP_ARG, ShowHelp, UsageFormatter
from hfmagic.core.config import HFMagic, use_settings
from hfmagic.core.errors import HFMagicError


def _is_name(text) -> bool:
    """Whether ``text`` can be a variable of the user's (an identifier, not a keyword)."""
    return isinstance(text, str) and text.isidentifier() and not keyword.iskeyword(text)


class ShellContext(Context):
    """Names come from, and results go to, the shell's user namespace.

    ``widget``: show benchmark/evaluation results as the dashboard where the frontend can draw it
    (hfmagic.surface.display says where); ``--no-widget`` and ``-q`` turn it off.
    """

    interactive = True

    def __init__(self, shell, widget: bool = True):
        self.shell = shell
        self.widget = widget
        self._live = None

    def lookup(self, ref):
        if _is_name(ref):
            return self.shell.user_ns.get(ref)
        return None

    def bind(self, name, obj):
        if not _is_name(name):
            raise UsageError(f"{name!r} is not a valid variable name; pass --name with one")
        self.shell.user_ns[name] = obj

    def show(self, result):
        """Display ``result``; a run that streamed into a live dashboard updates that one instead."""
        from hfmagic.surface.display import show

        show(self.shell, result, live=self._live, widget=self.widget)

    def live(self, kind):
        """A callback that shows a dashboard on the run's first event and fills it as rows finish."""
        from hfmagic.surface.display import live_view

        self._live = live_view(self.shell, kind, widget=self.widget)
        return self._live


@magics_class
class HFMagics(Magics):
    """%load_model, %export_onnx, %benchmark, %evaluate, %optimize and %hfmagic."""

    def __init__(self, shell, settings: HFMagic | None = None):
        super().__init__(shell)
        self.settings = settings or HFMagic(parent=shell)
        use_settings(self.settings)
        if self.settings not in shell.configurables:
            shell.configurables.append(self.settings)
        self._commands = {}
        for module in COMMAND_MODULES:
            cmd = importlib.import_module(module)
            self.magics["line"][cmd.MAGIC] = self._magic_for(cmd)
            self._commands[cmd.MAGIC] = cmd, self.magics["line"][cmd.MAGIC]

    def _magic_for(self, cmd):
        def magic(line=""):
            return self._run(cmd, magic, line)

        magic.__name__ = cmd.MAGIC
        magic.__doc__ = cmd.DOC
        magic = magic_arguments()(with_arguments([*cmd.ARGS, HELP_ARG])(magic))
        magic.parser.prog = f"%{cmd.MAGIC}"  # for -h; %benchmark? keeps IPython's own layout
        magic.parser.formatter_class = UsageFormatter
        return magic

    def _run(self, cmd, magic, line):
        try:
            return self._parse_and_run(cmd, magic, line)
        except ShowHelp as shown:  # -h (also %hfmagic runs -h): the help, and nothing run
            print(shown, end="")
            return None

    def parse(self, name: str, line: str):
        """The arguments of ``%name line`` as its magic reads them, running nothing (the docs test
        checks every README line with it). The line is split as a shell splits one
        (hfmagic.surface.argline: quotes group, a word starting with # begins a comment)."""
        cmd, magic = self._commands[name]
        return magic.parser.parse_args([word.text for word in split_line(line)])

    def _parse_and_run(self, cmd, magic, line):
        try:
            args = self.parse(cmd.MAGIC, line)
            if getattr(args, "name", None) is not None and not _is_name(args.name):  # before any work
                raise UsageError(f"--name {args.name!r} is not a valid variable name; pass one such as result")
            # the dashboard unless %config HFMagic.widget = False, --no-widget or -q says otherwise
            no_widget = getattr(args, "no_widget", False) or getattr(args, "quiet", False) or not self.settings.widget
            ctx = ShellContext(self.shell, widget=not no_widget)
            result = cmd.run(args, ctx)
        except (UsageError, HFMagicError) as exc:  # a path that $p split at its spaces explains most
            raise UsageError(self._split_path(line) or str(exc)) from None
        if not hasattr(args, "output"):  # no -o/-q: the result is the cell's value (%hfmagic status)
            return result
        if not args.quiet and result is not None:  # %serve --stop said what it did itself
            ctx.show(result)
        return result if args.output else None

    @staticmethod
    def _split_path(line):
        try:
            return split_path(line, split_line(line))
        except HFMagicError:  # the line itself cannot be split: its own message says so
            return None
