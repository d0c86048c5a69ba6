"""The memory guard on the command line: refused too, saying what was available."""

import re
import resource
import subprocess
import sys
import time


from tests.support.fast import NO_WARMUP as FAST

OOM_ROW = re.compile(r"out of memory at batch (\d+) x seq (\d+) \(needed ~[\d.]+ GB, had [\d.]+ GB\)")


def test_the_command_line_refuses_too_and_says_what_was_available(tiny_bert):
    """Under ``ulimit -v`` (RLIMIT_AS) the limit is what is available. Run so that, were the guard
    missing, the sweep would fail for memory inside the limit instead of taking the machine's."""
    limit = 2 << 30

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    started = time.monotonic()
    cli = subprocess.run([sys.executable, "-m", "hfmagic", "benchmark", str(tiny_bert), "--variants", "torch",
                          "--batch-sizes", "1,8,4096", "--seq-lens", "256,512", *FAST.split()],
                         capture_output=True, text=True, preexec_fn=limited, timeout=120)
    assert cli.returncode == 2, cli.stdout + cli.stderr
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and cli.stdout == ""
    match = re.fullmatch(r"hfmagic: batch 4096 x seq 256 \(and 1 larger shape\) needs ~([\d.]+) GB of memory "
                         r"and ([\d.]+) GB is available; use smaller --batch-sizes/--seq-lens, or --force "
                         r"to run it anyway", lines[0])
    assert match, lines[0]
    assert float(match[2]) < 2.2 and time.monotonic() - started < 30
    # --force measures it anyway, in a real worker (it inherits the limit): the shape's row names it
    forced = subprocess.run([sys.executable, "-m", "hfmagic", "benchmark", str(tiny_bert), "--variants", "torch",
                             "--batch-sizes", "1,4096", "--seq-lens", "256", "--force", *FAST.split()],
                            capture_output=True, text=True, preexec_fn=limited, timeout=300)
    assert forced.returncode == 0, forced.stderr[-2000:]
    rows = [line for line in forced.stdout.splitlines() if line.startswith("torch ")]
    assert rows[0].split()[-1] == "ok" and len(rows) == 2
    assert OOM_ROW.search(rows[1]) and OOM_ROW.search(rows[1]).groups() == ("4096", "256"), rows[1]
    assert "can't allocate" not in forced.stdout and "note: --force: batch 4096 x seq 256 needs ~" in forced.stdout
