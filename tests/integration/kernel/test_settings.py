"""Settings are checked when they are set: a bad value gets one line and the old value stays.

Through IPython's real ``%config`` magic, which sets the value inside traitlets'
``hold_trait_notifications`` and logs (``logging.error``) whatever the update raises; and from
Python (``hfmagic.settings().x = ...``). Also: empty items in comma-separated options, the
environment card outside a git repository, and an export whose every ONNX variant diverged.
"""

import copy
import logging
import re

import pytest
from IPython.core.error import UsageError
from traitlets import TraitError

import hfmagic
from hfmagic.core.errors import UsageProblem
from tests.support.paths import REPO


@pytest.fixture
def kept(shell):
    """The shell's settings; every value (and the config %config merged into them) is restored
    afterwards, since the shell is shared by the whole session."""
    s = hfmagic.settings()
    values = {name: copy.deepcopy(getattr(s, name)) for name in s.traits(config=True)}
    config = copy.deepcopy(s.config)
    yield s
    s.config = config
    for name, value in values.items():
        setattr(s, name, value)


def config(shell, caplog, line: str) -> list[str]:
    """Run ``%config LINE`` as a user types it; the lines it logged."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        shell.run_line_magic("config", line)
    return [r.getMessage() for r in caplog.records]


def status(shell) -> str:
    return str(shell.run_line_magic("hfmagic", "status"))


def shows(shell, field: str, value: str) -> bool:
    """Whether ``%hfmagic status`` shows ``field`` with a value that starts ``value``."""
    return re.search(rf"^{field}\s+{re.escape(value)}", status(shell), re.MULTILINE) is not None


def refused_once(logged: list[str], setting: str, takes: str) -> str:
    assert len(logged) == 1, logged
    line = logged[0]
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"HFMagic.{setting}") and f"{setting} takes {takes}" in line
    assert line.endswith("the setting keeps its value")
    return line


@pytest.mark.parametrize("value, why", [
    ("-3", "HFMagic.threads = -3 refused;"),
    ("'abc'", "HFMagic.threads = 'abc' refused;"),
    ("'4'", "(without quotes)"),
    ("2.5", "HFMagic.threads = 2.5 refused"),
    ("True", "HFMagic.threads = True refused"),
])
def test_a_bad_thread_count_is_refused_and_the_old_one_kept(shell, caplog, kept, value, why):
    assert config(shell, caplog, "HFMagic.threads = 3") == []
    logged = config(shell, caplog, f"HFMagic.threads = {value}")
    assert kept.threads == 3 and kept.resolved_threads() == 3
    assert why in refused_once(logged, "threads", "0 (one per physical core) or a positive whole number")
    assert shows(shell, "threads", "3 (0: one per physical core")
    assert config(shell, caplog, "HFMagic.threads = 0") == [] and kept.threads == 0  # 0 is allowed


@pytest.mark.parametrize("setting, value, why", [
    ("seq_lens", "'x'", "item 'x' refused: not a whole number"),
    ("seq_lens", "[128, 'x']", "item 'x' refused: not a whole number"),
    ("seq_lens", "[]", "the list is empty"),
    ("batch_sizes", "[1, 0]", "0 is not a positive whole number"),
    ("batch_sizes", "[-8]", "-8 is not a positive whole number"),
    ("batch_sizes", "4", "HFMagic.batch_sizes = 4 refused"),
])
def test_bad_default_shapes_are_refused_and_the_old_ones_kept(shell, caplog, kept, setting, value, why):
    assert config(shell, caplog, f"HFMagic.{setting} = [2, 16]") == []
    logged = config(shell, caplog, f"HFMagic.{setting} = {value}")
    assert getattr(kept, setting) == [2, 16]
    assert why in refused_once(logged, setting, "a non-empty list of positive whole numbers")
    assert shows(shell, "batch sizes" if setting == "batch_sizes" else "sequence lengths", "2,16")


def test_on_off_settings_take_only_true_or_false(shell, caplog, kept):
    for setting in ("widget", "store"):
        logged = config(shell, caplog, f"HFMagic.{setting} = 'no'")
        assert getattr(kept, setting) is True
        assert "(without quotes)" in refused_once(logged, setting, "True or False")


def test_a_cache_folder_that_cannot_be_made_is_refused_and_everything_still_works(shell, caplog, kept, tmp_path):
    before = kept.cache_dir
    logged = config(shell, caplog, "HFMagic.cache_dir = '/proc/forbidden'")
    assert kept.cache_dir == before
    assert "hfmagic runs" in str(shell.run_line_magic("hfmagic", "runs"))  # the store, in the old folder
    line = refused_once(logged, "cache_dir", "a folder hfmagic can create and write in")
    assert "cannot create /proc/forbidden" in line
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for bad, why in [(a_file, "is a file, not a folder"), (a_file / "sub", "cannot create"), ("", "no folder given")]:
        line = refused_once(config(shell, caplog, f"HFMagic.cache_dir = {str(bad)!r}"), "cache_dir", "a folder")
        assert why in line
    assert kept.cache_dir == before and shows(shell, "cache folder", before)
    # a folder that can be made is made, and used
    new = tmp_path / "new" / "cache"
    assert config(shell, caplog, f"HFMagic.cache_dir = {str(new)!r}") == []
    assert new.is_dir() and shows(shell, "cache folder", str(new))
    assert f"store: {new / 'runs.sqlite'}" in str(shell.run_line_magic("hfmagic", "runs"))


def test_a_run_store_file_that_cannot_be_written_is_refused(shell, caplog, kept, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for bad, why in [(tmp_path, "is a folder, not a file"), ("/proc/forbidden/runs.sqlite", "cannot create /proc/forbidden"),
                     (a_file / "runs.sqlite", "a-file is a file, not a folder")]:
        logged = config(shell, caplog, f"HFMagic.store_path = {str(bad)!r}")
        assert kept.store_path == ""
        assert why in refused_once(logged, "store_path", "'' (runs.sqlite in the cache folder) or a file")
    assert "hfmagic runs" in str(shell.run_line_magic("hfmagic", "runs"))
    good = tmp_path / "sub" / "runs.sqlite"
    assert config(shell, caplog, f"HFMagic.store_path = {str(good)!r}") == [] and kept.store_path == str(good)
    assert f"store: {good}" in str(shell.run_line_magic("hfmagic", "runs"))
    assert config(shell, caplog, "HFMagic.store_path = ''") == [] and kept.store_path == ""


def test_setting_a_bad_value_from_python_is_refused_in_one_line(shell, kept):
    kept.threads = 2
    for name, value in [("threads", -3), ("threads", "abc"), ("seq_lens", ["x"]), ("batch_sizes", [0]),
                        ("cache_dir", "/proc/forbidden")]:
        old = getattr(kept, name)
        with pytest.raises(TraitError) as refused:
            setattr(kept, name, value)
        assert isinstance(refused.value, UsageProblem)  # the magics and the CLI show one line
        assert "\n" not in str(refused.value) and str(refused.value).startswith(f"HFMagic.{name}")
        assert getattr(kept, name) == old
    assert kept.threads == 2 and shows(shell, "threads", "2 (0:")


@pytest.mark.parametrize("option", ["--batch-sizes 1,,8", "--seq-lens 32,", "--variants torch,,fp32"])
def test_an_empty_item_in_a_list_option_is_refused(shell, tiny_bert, option):
    with pytest.raises(UsageError, match=r"could not read .*: item \d of \d is empty; give a comma-separated "
                                         r"list without empty items") as refused:
        shell.run_line_magic("benchmark", f"{tiny_bert} {option} --inline -q")
    assert "\n" not in str(refused.value)


def test_an_export_whose_every_variant_diverged_is_not_recorded_ok(shell, caplog, kept, tiny_bert, tmp_path,
                                                                   monkeypatch):
    from hfmagic.onnx import validation
    from hfmagic.store.db import RunStore

    work = tmp_path / "not-a-repository"
    work.mkdir()
    monkeypatch.chdir(work)
    assert config(shell, caplog, f"HFMagic.cache_dir = {str(tmp_path / 'cache')!r}") == []
    monkeypatch.setitem(validation.COSINE_FLOOR, "float", 2.0)  # no cosine reaches it: every fp32 diverges
    variants = shell.run_line_magic("export_onnx", f"{tiny_bert} --levels fp32 --quantize none -q --name exported")
    assert variants is None and shell.user_ns["exported"]["fp32"].error.startswith("diverged from PyTorch")
    run = RunStore().get(shell.user_ns["exported"].run_id)
    assert run["status"] == "diverged"
    assert run["summary"]["error"].startswith("no ONNX variant passed validation: fp32 diverged from PyTorch")
    assert run["environment"]["git"]["commit"] == "not a git repository"
    listed = str(shell.run_line_magic("hfmagic", "runs"))
    assert "diverged" in listed and " ok " not in listed


def test_a_refused_first_setting_keeps_the_default_in_a_fresh_kernel(tmp_path):
    """The first thing a fresh shell does is a bad %config: the cache folder stays the default
    (traitlets rolls back to the value replaced, which must be the default, not the trait's '')."""
    import os
    import subprocess
    import sys

    code = ("from IPython.core.interactiveshell import InteractiveShell; ip = InteractiveShell.instance(); "
            "ip.run_line_magic('load_ext', 'hfmagic'); "
            "ip.run_line_magic('config', \"HFMagic.cache_dir = '/proc/forbidden'\"); "
            "import hfmagic; print(hfmagic.settings().cache_dir); ip.run_cell('%hfmagic runs')")
    cache = tmp_path / "cache"
    root = str(REPO)  # this checkout's hfmagic
    env = {**os.environ, "HFMAGIC_CACHE_DIR": str(cache), "IPYTHONDIR": str(tmp_path / "ipython"), "PYTHONPATH": root}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(cache)
    assert f"store: {cache / 'runs.sqlite'}" in done.stdout and not (tmp_path / "runs.sqlite").exists()
    refused = [line for line in done.stderr.splitlines() if "refused" in line]
    assert len(refused) == 1 and "HFMagic.cache_dir = '/proc/forbidden' refused" in refused[0]
    assert "Traceback" not in done.stderr
