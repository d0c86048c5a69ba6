"""``%hfmagic runs|compare|rerun|report`` (and ``hfmagic runs|compare|rerun|report``): the run store."""

from __future__ import annotations

from IPython.core.magic_arguments import argument

RUN_HELP = "a run id, or the end of one that only one run's id has (e.g. its last 6 characters)"


class Runs:
    DOC = "List the recorded runs: id, time, kind, model, status, rows and a headline figure."
    ARGS = [
        argument("--kind", choices=["export", "benchmark", "evaluate"], help="only runs of this kind"),
        argument("--limit", type=int, default=20, help="the newest N runs (default 20; 0 lists all)"),
    ]

    @staticmethod
    def run(args, ctx):
        from hfmagic.runs import list_runs

        return list_runs(kind=args.kind, limit=args.limit or None)


class Compare:
    DOC = ("Compare two runs: what differs in parameters, provenance and environment, and the figures "
           "side by side (matched by configuration) with the change in percent.")
    ARGS = [argument("a", help=RUN_HELP), argument("b", help=RUN_HELP)]

    @staticmethod
    def run(args, ctx):
        from hfmagic.runs import compare

        return compare(args.a, args.b)


class Rerun:
    DOC = ("Run a recorded export, benchmark or evaluation again with its recorded parameters, on the model "
           "its provenance names; the new run is recorded too.")
    ARGS = [argument("run_id", metavar="RUN", help=RUN_HELP),
            argument("-q", "--quiet", action="store_true", help="no progress bar")]

    @staticmethod
    def run(args, ctx):
        from hfmagic.runs import rerun
        from hfmagic.store import RunStore

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
        from hfmagic.report import write_report

        return write_report(args.run_ids, args.html, title=args.title)
