"""The run list's headline on the command line: a budget-stopped %optimize says where it stopped."""

import os


from hfmagic.store.db import RunStore
from tests.support.cli import cli
from tests.support.tiny import labelled


def test_a_budget_stopped_optimize_says_where_it_stopped_on_the_command_line(tiny_bert, tmp_path):
    labelled(60).to_csv(tmp_path / "texts.csv", index=False)
    env = {**os.environ, "HFMAGIC_CACHE_DIR": str(tmp_path / "cache")}

    shown = cli("optimize", str(tiny_bert), "--data", str(tmp_path / "texts.csv"), "--budget", "2", "--threads", "1",
                "--backends", "onnxruntime,torch", env=env, check=True).stdout
    (run,) = RunStore(tmp_path / "cache" / "runs.sqlite").runs(kind="optimize")
    listed = cli("runs", "--kind", "optimize", env=env, check=True).stdout
    line = next(ln for ln in listed.splitlines() if ln.startswith(run["id"]))
    assert "no configuration kept" not in line and "stopped by the budget " in line, line
    said = line[line.index("stopped by the budget "):]
    assert "no candidate reached the gate" in said and said == run["summary"]["outcome"]
    assert f"note: {said}" in shown  # the result's own table says it first
