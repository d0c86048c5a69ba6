"""The Python API as the README shows it (hfmagic.load_model, export_onnx, benchmark, evaluate, ...),
called again and again in any order in a fresh process; no public name shadowed by a submodule."""

import importlib
import json
import pkgutil
import subprocess
import sys
import textwrap

import pytest

import hfmagic


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
    # serve and loadtest start a Ray Serve of their own (20 s): tests/integration/cluster/test_serve.py
    # calls both through a real one
    functions = sorted(n for n in hfmagic.__all__ if n not in ("serve", "loadtest")
                       and callable(getattr(hfmagic, n)) and not inspect.isclass(getattr(hfmagic, n)))
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
