"""`hfmagic benchmark` of an image model."""

from __future__ import annotations

import subprocess
import sys


from tests.support.fast import AUDIO_IMAGE_TIMING as FAST


def test_the_cli_benchmarks_an_image_model(tiny_image):
    out = subprocess.run([sys.executable, "-m", "hfmagic", "benchmark", str(tiny_image("resnet")), "--variants",
                          "fp32", "--batch-sizes", "1", "--image-sizes", "32", *FAST.split()],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "image px" in out.stdout and "images/s" in out.stdout
