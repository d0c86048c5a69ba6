"""The Python API as the README shows it, called again and again; -h on every command; an hfmagic
error shown as one line wherever a user meets it (magic, command line, a Python call in a cell)."""

import importlib
import json
import pkgutil
import subprocess
import sys
import textwrap

import pytest
from IPython.core.error import UsageError

import hfmagic
from hfmagic.core.errors import UsageProblem
from tests.support.cli import cli, one_line
from tests.support.fast import TORCH_ONLY_SWEEP as SWEEP


# -- 0. the Python API works every time, in any order ----------------------------------------------

# Every hfmagic.NAME is looked up again at each call, as a user types it: a submodule imported on
# the way used to replace hfmagic.benchmark/evaluate (the functions) with the module.
API_SCRIPT = textwrap.dedent(r"""
    import inspect, json, sys
    import pandas as pd
    import hfmagic
    from IPython.core.interactiveshell import InteractiveShell

    folder, order = sys.argv[1], sys.argv[2].split(",")
    called = set()

    def call(name, *args, **kwargs):
        obj = getattr(hfmagic, name)
        assert callable(obj), f"hfmagic.{name} is {obj!r}, not callable"
        called.add(name)
        return obj(*args, **kwargs)

    data = pd.DataFrame({"text": ["shares rose", "the team won", "a new phone", "the vote"] * 2,
                         "label": ["business", "sport", "business", "politics"] * 2})
    sweep = dict(variants=["fp32"], backends=["onnxruntime"], batch_sizes=[1], seq_lens=[8],
                 min_time=0.05, min_runs=2, warmup=0, inline=True, progress=False)
    ip = InteractiveShell.instance()
    model = call("load_model", folder)
    variants = call("export_onnx", model, levels=["fp32"], quantize="none", progress=False)
    bench = ev = None
    for step in order:
        if step == "load":
            assert call("load_model", folder).task == "text-classification"
        elif step == "export":
            variants = call("export_onnx", model, levels=["fp32"], quantize="none", progress=False)
            assert [v.name for v in variants] == ["torch", "fp32"] and variants["fp32"].error is None
        elif step == "benchmark":
            bench = call("benchmark", variants, **sweep)
            assert [r["status"] for r in bench.rows] == ["ok"], bench.rows
        elif step == "evaluate":
            ev = call("evaluate", variants, data=data, progress=False)
            assert [r["status"] for r in ev.rows] == ["ok", "ok"], ev.rows
        elif step == "dashboard":
            dash = call("Dashboard", *[r for r in (bench, ev) if r is not None])
            assert dash.rows and all(r["variant"] in ("torch", "fp32") for r in dash.rows)
        elif step == "optimize":  # a budget that ends the search during its builds: it says so
            found = call("optimize", model, data=data, backends=["onnxruntime"], budget=0.5, progress=False)
            assert any(n.startswith("budget:") for n in found.notes), found.notes
        elif step == "settings":
            assert call("settings").threads >= 0
        elif step == "ext":
            call("load_ipython_extension", ip)
            assert "benchmark" in ip.magics_manager.magics["line"]
            assert "hfmagic status" in str(ip.run_line_magic("hfmagic", "status"))
    functions = sorted(n for n in hfmagic.__all__
                       if callable(getattr(hfmagic, n)) and not inspect.isclass(getattr(hfmagic, n)))
    print(json.dumps({"functions": functions, "called": sorted(called)}))
""")

ORDERS = {
    "benchmark-evaluate-benchmark": "settings,benchmark,evaluate,optimize,dashboard,benchmark,export,evaluate,"
                                    "load,dashboard,benchmark,settings,ext,optimize,load,ext",
    "evaluate-benchmark-evaluate": "ext,optimize,evaluate,benchmark,evaluate,dashboard,export,benchmark,ext,evaluate,"
                                   "load,optimize,dashboard,settings,load,settings",
}


@pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS.keys())
def test_every_public_function_works_twice_in_any_order_in_a_fresh_process(tiny_bert, order):
    steps = ["load", "export", *order.split(",")]  # the script starts with a load and an export
    assert all(steps.count(s) >= 2 for s in set(steps))
    done = subprocess.run([sys.executable, "-c", API_SCRIPT, str(tiny_bert), order],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(out["functions"]) <= set(out["called"]), "a public function the test does not call"
    assert out["called"] == sorted(out["functions"] + ["Dashboard"])


def test_no_public_name_is_shadowed_by_a_submodule():
    """A name in __all__ that is also a module in the package would become that module once it is
    imported; the only such name allowed is one that exports the module itself (hfmagic.tasks.text.demo)."""
    modules = {m.name for m in pkgutil.iter_modules(hfmagic.__path__)}
    for name in set(hfmagic.__all__) & modules:
        assert getattr(hfmagic, name) is importlib.import_module(f"hfmagic.{name}"), \
            f"hfmagic.{name} is both a public name and a submodule: rename the module"
    # and, after every submodule is imported, each public function is still itself
    code = ("import importlib, inspect, pkgutil, hfmagic\n"
            "before = {n: getattr(hfmagic, n) for n in hfmagic.__all__}\n"
            "for m in pkgutil.walk_packages(hfmagic.__path__, 'hfmagic.'):\n"
            "    if not m.name.endswith('__main__'):  # that one runs the command line\n"
            "        importlib.import_module(m.name)\n"
            "print([n for n in hfmagic.__all__ if getattr(hfmagic, n) is not before[n]])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


# -- 4. -h on every command ------------------------------------------------------------------------

def cli_commands() -> list[str]:
    from hfmagic.surface.cli import commands

    return list(commands())


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_cli_command_has_help(flag):
    names = cli_commands()
    assert {"load", "export", "benchmark", "evaluate", "runs", "compare", "rerun", "report", "status",
            "demo"} <= set(names)
    for name in names:
        done = cli(name, flag)
        assert done.returncode == 0 and done.stderr == "", (name, done.stderr)
        assert done.stdout.startswith(f"usage: hfmagic {name}"), (name, done.stdout[:200])
        assert "-h, --help" in done.stdout and "options:" in done.stdout


def test_help_runs_nothing_even_with_other_arguments(tmp_path):
    done = cli("report", "no-such-run", "--html", str(tmp_path / "r.html"), "-h")
    assert done.returncode == 0 and done.stdout.startswith("usage: hfmagic report")
    assert not (tmp_path / "r.html").exists()


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
