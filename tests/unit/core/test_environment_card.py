"""The environment card: the machine, the packages and the git state behind a run."""

import json
import os
import subprocess
import sys
from pathlib import Path




def test_environment_card(tmp_path):
    import importlib.metadata as md

    code = ("import sys, json; from hfmagic.core.envcard import environment_card; card = environment_card(); "
            "print(json.dumps(card)); print('torch' in sys.modules)")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f.txt").write_text("one")
    subprocess.run(git + ["-C", str(repo), "add", "f.txt"], check=True)
    subprocess.run(git + ["-C", str(repo), "commit", "-qm", "c"], check=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()

    def card_in(folder):
        out = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True,
                             check=True, env={**os.environ, "OMP_NUM_THREADS": "3"}).stdout.splitlines()
        assert out[1] == "False"  # the card reads torch's state only when torch is already imported
        return json.loads(out[0])

    clean = card_in(repo)
    assert clean["git"]["commit"] == head and clean["git"]["dirty"] is False
    (repo / "f.txt").write_text("two")
    assert card_in(repo)["git"]["dirty"] is True
    card = card_in(tmp_path)
    assert card["git"]["commit"] == "not a git repository" and card["cwd"] == str(tmp_path)
    assert card["packages"]["onnxruntime"] == md.version("onnxruntime")
    assert card["packages"]["transformers"] == md.version("transformers")
    assert "CPUExecutionProvider" in card["onnxruntime_providers"]
    assert card["python"] == sys.version.split()[0] and card["logical_cpus"] == os.cpu_count()
    assert card["threads"]["OMP_NUM_THREADS"] == "3" and card["threads"]["resolved"] >= 1
    assert card["cpu"] and isinstance(card["gpus"], list) and card["os"]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and " avx2" in cpuinfo.read_text():
        assert "avx2" in card["cpu_flags"]
