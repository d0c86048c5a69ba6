"""The cache folder follows XDG_CACHE_HOME when nothing overrides it."""

import os
import subprocess
import sys



def test_cache_dir_follows_xdg_when_no_override(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HFMAGIC_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", "from hfmagic.core.config import settings; print(settings().cache_dir)"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(tmp_path / "hfmagic")
