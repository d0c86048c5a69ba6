"""Help in IPython, and an hfmagic error shown as one line wherever a user meets it in a cell (a
magic, a Python call, a dashboard export), the one-line handler set once and gone with the extension."""

import subprocess
import sys
import textwrap

import pytest
from IPython.core.error import UsageError

from hfmagic.core.errors import UsageProblem
from tests.support.cli import cli, one_line
from tests.support.fast import TORCH_ONLY_SWEEP as SWEEP


def test_help_inside_ipython_prints_it(shell, capsys):
    from hfmagic.surface.commands.admin import SUBCOMMANDS

    for sub in SUBCOMMANDS:
        assert shell.run_line_magic("hfmagic", f"{sub} -h") is None
        out = capsys.readouterr().out
        assert out.startswith(f"usage: %hfmagic {sub}") and "-h, --help" in out, (sub, out[:200])
    for magic in ("load_model", "export_onnx", "benchmark", "evaluate", "hfmagic"):
        res = shell.run_cell(f"%{magic} --help", store_history=False)
        assert res.success and res.result is None
        assert capsys.readouterr().out.startswith(f"usage: %{magic} "), magic
    # and %benchmark? keeps IPython's own layout
    assert shell.find_line_magic("benchmark").__doc__.startswith("::\n\n  %benchmark [--variants")


# -- 3. one line, not a traceback ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_run(shell, tiny_bert):
    """A recorded benchmark of the tiny model, bound as `api_bench` in the shell."""
    shell.run_line_magic("benchmark", f"{tiny_bert} {SWEEP} --name api_bench")
    return shell.user_ns["api_bench"]


@pytest.mark.parametrize("where", ["/proc/r.html", "/proc/no/such/r.html"])
def test_report_to_a_place_that_cannot_be_written_is_one_line(shell, bench_run, tmp_path, where):
    with pytest.raises(UsageError, match=f"cannot write {where} .*; give a file in a folder you can write to"):
        shell.run_line_magic("hfmagic", f"report {bench_run.run_id} --html {where}")
    done = cli("report", bench_run.run_id, "--html", where)
    assert done.returncode == 2 and done.stdout == ""
    assert one_line(done.stderr).startswith(f"hfmagic: cannot write {where} (")
    written = shell.run_line_magic("hfmagic", f"report {bench_run.run_id} --html {tmp_path / 'r.html'}")
    assert written.path.read_text().startswith("<!doctype html>")


def test_a_refused_dashboard_is_one_line_in_a_cell(shell, bench_run, tiny_factory, capsys):
    shell.run_cell("import hfmagic", store_history=False)
    capsys.readouterr()
    res = shell.run_cell("hfmagic.Dashboard(api_bench, 'junk')", store_history=False)
    assert isinstance(res.error_in_exec, UsageProblem)
    assert one_line(capsys.readouterr().out) == (
        "hfmagic: Dashboard takes benchmark and evaluation results (what hfmagic.benchmark() and "
        "hfmagic.evaluate() return, or lists of their rows), not str 'junk'; e.g. hfmagic.Dashboard(bench, ev)")
    for junk in ("42", "[1, 2]", "api_bench.rows[0]"):
        res = shell.run_cell(f"hfmagic.Dashboard({junk})", store_history=False)
        assert isinstance(res.error_in_exec, UsageProblem), junk
        assert one_line(capsys.readouterr().out).startswith("hfmagic: Dashboard takes benchmark"), junk
    # results of two different models are one comparison; a baseline that names no row is one line
    other = tiny_factory("distilbert", "text-classification")
    shell.run_line_magic("benchmark", f"{other} {SWEEP} --name api_other")
    res = shell.run_cell("api_two = hfmagic.Dashboard(api_bench, api_other)", store_history=False)
    assert res.success and len({r["model"] for r in shell.user_ns["api_two"].rows}) == 2
    res = shell.run_cell("hfmagic.Dashboard(api_bench, api_other, baseline='torch/torch')", store_history=False)
    assert isinstance(res.error_in_exec, UsageProblem)
    assert one_line(capsys.readouterr().out).startswith("hfmagic: baseline 'torch/torch' names no measured row; choose one of")
    # the traceback is there for whoever asks
    shell.run_line_magic("tb", "")
    assert "Traceback" in capsys.readouterr().out


def test_dashboard_exports_to_a_place_that_cannot_be_written_are_one_line(shell, bench_run, tmp_path, capsys):
    shell.run_cell("import hfmagic; api_dash = hfmagic.Dashboard(api_bench)", store_history=False)
    capsys.readouterr()
    for call in ("to_html('/proc/r.html')", "to_csv('/proc/r.csv')", f"to_csv({str(tmp_path)!r})"):
        res = shell.run_cell(f"api_dash.{call}", store_history=False)
        assert isinstance(res.error_in_exec, UsageProblem), call
        assert one_line(capsys.readouterr().out).startswith("hfmagic: cannot write "), call
    with pytest.raises(UsageProblem, match="cannot write /proc/r.html"):  # plain Python: the same error
        shell.user_ns["api_dash"].to_html("/proc/r.html")
    assert shell.user_ns["api_dash"].to_csv(tmp_path / "rows.csv").read_text().startswith("model,variant,")


def test_the_one_line_handler_keeps_one_set_before_and_goes_with_the_extension():
    code = textwrap.dedent("""
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.set_custom_exc((KeyError,), lambda shell, *exc, tb_offset=None: print("mine:", exc[1]))
        ip.run_line_magic("load_ext", "hfmagic")
        ip.run_cell("raise KeyError('k')")
        ip.run_cell("from hfmagic.core.errors import DataError; raise DataError('no text column; name one')")
        ip.run_line_magic("unload_ext", "hfmagic")
        print("-- unloaded")
        ip.run_cell("raise KeyError('k')")
        ip.run_cell("raise DataError('no text column; name one')")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded, unloaded = done.stdout.split("-- unloaded\n")
    assert loaded == "mine: 'k'\nhfmagic: no text column; name one\n"
    assert unloaded.startswith("mine: 'k'\n") and "Traceback" in unloaded
