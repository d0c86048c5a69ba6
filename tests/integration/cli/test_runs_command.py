"""`hfmagic runs`, `compare` and `rerun` on the command line."""

import os


from hfmagic.store.db import RunStore
from tests.support.cli import cli
from tests.support.store import record


def test_runs_and_compare_on_the_command_line(tmp_path):
    env = {**os.environ, "HFMAGIC_CACHE_DIR": str(tmp_path)}
    store = RunStore(tmp_path / "runs.sqlite")
    a = record(store, "export", {"levels": ["fp32"]},
               [{"variant": "torch", "status": "ok", "size_mb": 0.9}, {"variant": "fp32", "status": "ok", "size_mb": 0.8}])
    b = record(store, "export", {"levels": ["fp32", "O2"]},
               [{"variant": "torch", "status": "ok", "size_mb": 0.9}, {"variant": "fp32", "status": "ok", "size_mb": 0.4}])

    listed = cli("runs", env=env)
    assert listed.returncode == 0 and a in listed.stdout and b in listed.stdout
    assert "2 variants; smallest fp32 0.4 MB" in listed.stdout
    compared = cli("compare", a, b[-6:], env=env)
    assert compared.returncode == 0
    line = next(ln for ln in compared.stdout.splitlines() if ln.startswith("fp32") and "size_mb" in ln)
    assert line.split()[2:5] == ["0.8", "0.4", "-50.0"]
    bad = cli("rerun", "nosuchrun", env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("hfmagic: no run 'nosuchrun'")
