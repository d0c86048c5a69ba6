"""%benchmark's memory guard in the shell: a shape whose estimate exceeds the memory there is is refused
at once, in one line, before anything runs."""

import re
import time

import psutil
from IPython.core.error import UsageError

from tests.support.fast import NO_WARMUP as FAST
from tests.support.store import runs_in_store


def test_a_shape_that_cannot_fit_is_refused_at_once_in_one_line(shell, tiny_bert, capsys):
    """Batch 100000 x seq 512 of a tiny BERT: ~1.5 TB estimated (the attention scores alone are
    100000 x 2 heads x 512 x 512 floats); refused before a worker starts or anything is exported."""
    shell.user_ns["tiny_path"] = str(tiny_bert)
    before = runs_in_store()
    started = time.monotonic()
    res = shell.run_cell(f"%benchmark $tiny_path --variants torch,fp32 --batch-sizes 1,100000 --seq-lens 512 {FAST}",
                         store_history=False)
    took = time.monotonic() - started
    out = capsys.readouterr()
    assert not res.success and isinstance(res.error_in_exec, UsageError)
    message = str(res.error_in_exec)
    match = re.fullmatch(r"batch 100000 x seq 512 needs ~([\d.]+) GB of memory and ([\d.]+) GB is available; "
                         r"use smaller --batch-sizes/--seq-lens, or --force to run it anyway", message)
    assert match, message
    assert float(match[1]) > 1000 and abs(float(match[2]) - psutil.virtual_memory().available / 1e9) < 2
    assert "Traceback" not in out.out + out.err and len((out.out + out.err).strip().splitlines()) == 1
    assert took < 5 and runs_in_store() == before
