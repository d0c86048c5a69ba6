"""`hfmagic benchmark` prints the table, and bad input is one line."""

import subprocess
import sys



from tests.support.fast import BENCHMARK_TIMING as FAST


def test_command_line_prints_the_table(tiny_bert):
    ok = subprocess.run([sys.executable, "-m", "hfmagic", "benchmark", str(tiny_bert), "--variants", "torch",
                         "--batch-sizes", "1", "--seq-lens", "8", *FAST.split()],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    header, rule, row = ok.stdout.splitlines()[1:4]
    assert header.split()[:5] == ["variant", "backend", "batch", "seq", "p50"]
    assert row.split()[:4] == ["torch", "torch", "1", "8"] and row.split()[-1] == "ok"
    bad = subprocess.run([sys.executable, "-m", "hfmagic", "benchmark", str(tiny_bert), "--seq-lens", "9999"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("hfmagic: sequence length 9999 is beyond")
    assert bad.stderr.strip().count("\n") == 0
