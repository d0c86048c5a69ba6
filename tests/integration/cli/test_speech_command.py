"""`hfmagic evaluate` of a speech model on LibriVox."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hfmagic.tasks.speech.audio import LIBRIVOX

pytestmark = pytest.mark.skipif(not LIBRIVOX.exists(), reason="needs Debian's pocketsphinx-testdata (make data)")


def test_the_cli_evaluates_a_speech_model(tiny_speech):
    out = subprocess.run([sys.executable, "-m", "hfmagic", "evaluate", str(tiny_speech("hubert")), "--data", "librivox",
                          "--variants", "torch,fp32"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "wer" in out.stdout and "cer" in out.stdout and "does not transcribe" in out.stdout
