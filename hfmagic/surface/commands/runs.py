"""``%hfmagic runs|compare|rerun|report|tag|delete|gc|store`` (and ``hfmagic ...``): the run store."""

from __future__ import annotations

import sys

from IPython.core.magic_arguments import argument

from hfmagic.core.errors import UsageProblem

RUN_HELP = "a run id, or the end of one that only one run's id has (e.g. its last 6 characters)"


class Runs:
    DOC = "List the recorded runs: id, time, kind, model, status, rows and a headline figure."
    ARGS = [
        argument("--kind", choices=["export", "benchmark", "evaluate", "optimize", "loadtest"], help="only runs of this kind"),
        argument("--model", metavar="NAME",
                 help="only runs of this model: its name, its source, or the start of its weights' sha256"),
        argument("--since", metavar="WHEN",
                 help="only runs started since: a date (2026-01-31, '2026-01-31 14:00') or a time ago (30m, 2h, 3d, 1w)"),
        argument("--limit", type=int, default=20, help="the newest N runs (default 20; 0 lists all)"),
    ]

    @staticmethod
    def run(args, ctx):
        from hfmagic.runs.history import list_runs

        if args.limit < 0:
            raise UsageProblem(f"--limit must be 0 (every run) or a positive number of runs, got {args.limit}")
        return list_runs(kind=args.kind, limit=args.limit or None, model=args.model, since=args.since)


class Compare:
    DOC = ("Compare two runs: what differs in parameters, provenance and environment, and the figures "
           "side by side (matched by configuration) with the change in percent.")
    ARGS = [argument("a", help=RUN_HELP), argument("b", help=RUN_HELP)]

    @staticmethod
    def run(args, ctx):
        from hfmagic.runs.compare import compare

        return compare(args.a, args.b)


class Rerun:
    DOC = ("Run a recorded export, benchmark or evaluation again with its recorded parameters, on the model "
           "its provenance names; the new run is recorded too.")
    ARGS = [argument("run_id", metavar="RUN", help=RUN_HELP),
            argument("-q", "--quiet", action="store_true", help="no progress bar")]

    @staticmethod
    def run(args, ctx):
        from hfmagic.runs.rerun import rerun
        from hfmagic.store.db import RunStore

        kind = RunStore().get(args.run_id)["kind"]
        return rerun(args.run_id, callback=ctx.live(kind), progress=not args.quiet)


class Report:
    DOC = ("Write one self-contained offline HTML report of runs: the dashboard, the environment card and "
           "the optimum-cli command that rebuilds each variant.")
    ARGS = [argument("run_ids", nargs="+", metavar="RUN", help=RUN_HELP),
            argument("--html", metavar="FILE", help="the file to write (default: reports/ in the cache folder)"),
            argument("--title", help="the report's title")]

    @staticmethod
    def run(args, ctx):
        from hfmagic.runs.report import write_report

        return write_report(args.run_ids, args.html, title=args.title)


class Tag:
    DOC = "Tag a run with a short text, shown in the runs list (--clear removes it)."
    ARGS = [argument("run_id", metavar="RUN", help=RUN_HELP),
            argument("text", nargs="*", help="the tag (several words are joined)"),
            argument("--clear", action="store_true", help="remove the run's tag")]

    @staticmethod
    def run(args, ctx):
        from hfmagic.runs.history import tag_run

        text = " ".join(args.text).strip()
        if bool(text) == args.clear:
            raise UsageProblem("give a tag's text, or --clear to remove the tag" if not text else
                               "give either a tag's text or --clear, not both")
        return tag_run(args.run_id, text or None)


def _answer(question: str) -> bool:
    return input(question).strip().lower() in ("y", "yes")


class Delete:
    DOC = ("Delete runs and their rows from the run store; asks first (--yes does not). The variants they "
           "built stay in the cache (gc removes those no run refers to).")
    ARGS = [argument("run_ids", nargs="+", metavar="RUN", help=RUN_HELP),
            argument("-y", "--yes", action="store_true", help="delete without asking")]

    @staticmethod
    def run(args, ctx):
        from hfmagic.runs.history import delete_runs

        ask = None if args.yes else _answer
        if ask is not None and not ctx.interactive and not sys.stdin.isatty():
            raise UsageProblem("delete asks before deleting and there is no terminal to ask on; pass --yes to "
                               "delete without asking")
        return delete_runs(args.run_ids, ask=ask)


class Gc:
    DOC = ("Remove the cached ONNX variants that no recorded run refers to (by file sha256 or path) and say "
           "how much space that frees; --dry-run only lists them.")
    ARGS = [argument("--dry-run", action="store_true", help="list what would be removed; delete nothing")]

    @staticmethod
    def run(args, ctx):
        from hfmagic.runs.history import gc

        return gc(dry_run=args.dry_run)


class Store:
    DOC = ("The run store itself: `store repair` saves every readable run of a damaged store into a fresh "
           "one and keeps the damaged file aside (runs.sqlite.damaged-<time>).")
    ARGS = [argument("action", choices=["repair"], help="repair: salvage a damaged store into a fresh one")]

    @staticmethod
    def run(args, ctx):
        from hfmagic.store import repair

        return repair()
