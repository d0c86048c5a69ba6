"""The run store's housekeeping on the command line: its own words for a damaged store and repair,
delete asking on a terminal and refusing without one, gc listed in help."""

import os
import pty
import select
import subprocess
import sys
import time


from hfmagic.core.config import settings
from hfmagic.export.api import export_onnx
from hfmagic.models.handle import load_model
from hfmagic.store.db import RunStore
from tests.support.cli import cli
from tests.support.store import aside, many_runs, truncate


def test_the_command_line_has_its_own_words_for_a_damaged_store(tmp_path, tiny_bert, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(settings(), "cache_dir", str(cache))
    export_onnx(load_model(tiny_bert), levels=["fp32"], quantize="none", progress=False)  # cached for the CLI
    path = cache / "runs.sqlite"
    ids = many_runs(RunStore(path))
    damaged = truncate(path, 0.5)
    env = {"HFMAGIC_CACHE_DIR": str(cache)}

    listed = cli("runs", env=env)
    assert listed.returncode == 2 and listed.stdout == "" and len(listed.stderr.splitlines()) == 1
    assert listed.stderr.startswith(f"hfmagic: the run store {path} is damaged (database disk image is malformed); "
                                    "hfmagic store repair saves every readable run")
    assert "%" not in listed.stderr
    exported = cli("export", str(tiny_bert), "--levels", "fp32", "--quantize", "none", "-q", env=env)
    assert exported.returncode == 0, exported.stderr
    (warning,) = exported.stderr.splitlines()
    assert "is damaged" in warning and "hfmagic store repair" in warning and "HFMAGIC_STORE=0" in warning
    assert "%" not in warning
    quiet = cli("export", str(tiny_bert), "--levels", "fp32", "--quantize", "none", env={**env, "HFMAGIC_STORE": "0"})
    assert quiet.returncode == 0 and quiet.stderr == "" and "ONNX variants of" in quiet.stdout
    python = subprocess.run([sys.executable, "-c", "from hfmagic.store.db import default_store; print(default_store())"],
                            capture_output=True, text=True, env={**os.environ, **env})
    assert python.stdout == "None\n" and "hfmagic.store.repair()" in python.stderr
    assert "hfmagic.settings().store = False" in python.stderr and path.read_bytes() == damaged

    repaired = cli("store", "repair", env=env)
    assert repaired.returncode == 0 and repaired.stdout.startswith("saved ")
    saved = RunStore(path).runs(limit=None)
    assert 0 < len(saved) < len(ids) and f"saved {len(saved)} runs" in repaired.stdout
    assert aside(path).read_bytes() == damaged
    assert cli("runs", env=env).returncode == 0


def test_delete_on_the_command_line_asks_on_a_terminal_and_refuses_without_one(tmp_path):
    env = {"HFMAGIC_CACHE_DIR": str(tmp_path)}
    ids = many_runs(RunStore(tmp_path / "runs.sqlite"), 3)
    refused = cli("delete", ids[0], env=env, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "there is no terminal to ask on; pass --yes" in refused.stderr
    assert len(RunStore(tmp_path / "runs.sqlite").runs()) == 3

    master, slave = pty.openpty()  # a terminal, as a user has: the question, then "y"
    proc = subprocess.Popen([sys.executable, "-m", "hfmagic", "delete", ids[0]], stdin=slave, stdout=slave,
                            stderr=slave, env={**os.environ, **env})
    os.close(slave)
    seen, deadline = b"", time.time() + 60
    while b"[y/N]" not in seen and time.time() < deadline:
        if select.select([master], [], [], 1)[0]:
            seen += os.read(master, 1024)
    os.write(master, b"y\n")
    proc.wait(timeout=60)
    while select.select([master], [], [], 0.2)[0]:
        try:
            seen += os.read(master, 1024)
        except OSError:
            break
    os.close(master)
    assert proc.returncode == 0 and f"delete 1 run ({ids[0]})".encode() in seen and b"deleted 1 run" in seen
    assert b"hfmagic gc removes" in seen and b"%" not in seen

    done = cli("delete", ids[1], ids[2][-6:], "--yes", env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and done.stdout.startswith("deleted 2 runs")
    assert RunStore(tmp_path / "runs.sqlite").runs() == []


def test_gc_on_the_command_line_and_listed_in_help(tmp_path):
    env = {"HFMAGIC_CACHE_DIR": str(tmp_path)}
    done = cli("gc", "--dry-run", env=env)
    assert done.returncode == 0 and "would free 0.0 MB: 0 cached variants" in done.stdout
    usage = cli(env=env).stdout
    assert all(f"  {name} " in usage for name in ("tag", "delete", "gc", "store"))
