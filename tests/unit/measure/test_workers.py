"""The measuring worker: onnxruntime's telemetry off in every worker, peak memory reset between shapes."""

import os
import subprocess
import sys

import numpy as np

import pytest



def test_peak_memory_is_reset_between_shapes():
    from hfmagic.measure.worker import peak_memory_mb, reset_peak_memory

    block = np.ones(40_000_000)  # 320 MB, touched
    high = peak_memory_mb()
    del block
    if not reset_peak_memory():
        pytest.skip("this system cannot reset the peak resident set size")
    assert peak_memory_mb() < high - 250


@pytest.mark.parametrize("allow, expected", [(None, "1"), ("1", None)])
def test_workers_start_with_onnxruntime_telemetry_off(allow, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "HFMAGIC_ALLOW_TELEMETRY")}
    if allow:
        env["HFMAGIC_ALLOW_TELEMETRY"] = allow
    out = subprocess.run([sys.executable, "-c", "import os, hfmagic.measure.worker; "
                          "print(os.environ.get('ORT_DISABLE_TELEMETRY'))"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(expected)
