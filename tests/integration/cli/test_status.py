"""`hfmagic status` says why the cache cannot be used."""

from __future__ import annotations



from tests.support.cli import cli


# -- hfmagic status with a cache it cannot write ---------------------------------------------------

def test_status_shows_why_the_cache_cannot_be_used(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = cli("status", env={"HFMAGIC_CACHE_DIR": str(blocker / "cache")})
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0] + " " + line.split()[1]: line for line in out.stdout.splitlines() if len(line.split()) > 1}
    assert f"{blocker / 'cache'} (not usable: cannot create" in lines["cache folder"]
    assert "Not a directory" in lines["cache folder"] and "HFMagic.cache_dir" in lines["cache folder"]
    assert "cannot record" in lines["run store"]
    assert "torch" in out.stdout and "onnxruntime" in out.stdout  # the rest of the status is there
