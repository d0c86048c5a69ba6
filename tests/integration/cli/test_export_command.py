"""`hfmagic export`: variants built on the command line, bad input in one line."""

import os
import subprocess
import sys




def test_cli_export(tiny_bert, tmp_path):
    env = dict(os.environ, HFMAGIC_CACHE_DIR=str(tmp_path / "cache"))
    ok = subprocess.run([sys.executable, "-m", "hfmagic", "export", str(tiny_bert), "--levels", "fp32",
                         "--quantize", "none", "--output", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "ONNX variants of" in ok.stdout and "optimum-cli export onnx" in ok.stdout
    assert (tmp_path / "out" / "fp32" / "model.onnx").is_file()
    bad = subprocess.run([sys.executable, "-m", "hfmagic", "export", str(tiny_bert), "--levels", "fp32,O7"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("hfmagic: unknown level 'O7'; choose from fp32, O1, O2, O3, O4")
