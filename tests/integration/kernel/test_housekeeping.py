"""A damaged run store never blocks the work and is repaired on request; runs filtered, tagged,
deleted; cached variants no run refers to collected. Through a real shell."""

import os
import sqlite3
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from hfmagic.core.config import settings
from hfmagic.export.cache import META
from hfmagic.models.handle import load_model
from hfmagic.store.db import RunStore
from tests.support.fast import STORE_BENCH as QUICK_BENCH
from tests.support.store import aside, many_runs, truncate
from tests.support.tiny import LABELS, make_tiny, sentences


@pytest.fixture
def place(shell, tmp_path, monkeypatch):
    """This test's own cache folder and run store (set as a user would); the settings put back after."""
    before = settings().store_path, settings().store
    monkeypatch.setattr(settings(), "cache_dir", str(tmp_path / "cache"))
    path = tmp_path / "runs.sqlite"
    shell.run_line_magic("config", f"HFMagic.store_path = {str(path)!r}")
    yield path
    shell.run_line_magic("config", f"HFMagic.store_path = {before[0]!r}")
    shell.run_line_magic("config", f"HFMagic.store = {before[1]!r}")


def one_line_error(shell, capsys, line) -> str:
    res = shell.run_cell(line, store_history=False)
    out = capsys.readouterr()
    assert not res.success and isinstance(res.error_in_exec, UsageError), res.error_in_exec
    lines = [ln for ln in (out.out + out.err).splitlines() if ln.strip()]
    assert "Traceback" not in "".join(lines) and len(lines) == 1, lines
    return str(res.error_in_exec)


# -- a damaged store -----------------------------------------------------------------------------
def test_a_truncated_store_warns_once_and_the_work_goes_on_then_repair_saves_its_runs(shell, capsys, place, tiny_bert):
    import pandas as pd

    shell.user_ns["tiny"] = load_model(tiny_bert)
    first = shell.run_line_magic("export_onnx", "tiny --levels fp32 --quantize none --name tv -o -q")
    store = RunStore(place)
    ids = [first.run_id] + many_runs(store)
    before = {run_id: store.get(run_id) for run_id in ids}
    damaged = truncate(place)
    capsys.readouterr()

    cached = shell.run_line_magic("export_onnx", "tiny --levels fp32 --quantize none -o -q")
    said = capsys.readouterr()
    assert cached.names == ["torch", "fp32"] and cached["fp32"].ok and cached.run_id is None
    (warning,) = said.err.splitlines()
    assert warning.startswith(f"hfmagic: warning: the run store {place} is damaged (database disk image is malformed)")
    assert "%hfmagic store repair" in warning and "%config HFMagic.store = False" in warning
    bench = shell.run_line_magic("benchmark", f"tv {QUICK_BENCH}")
    shell.user_ns["texts"] = pd.DataFrame({"text": sentences(20, seed=3), "label": (LABELS * 7)[:20]})
    ev = shell.run_line_magic("evaluate", "tv --data texts --variants fp32 -o -q")
    said = capsys.readouterr()
    assert [r["status"] for r in bench.rows] == ["ok"] and ev.rows[0]["accuracy"] is not None
    assert said.err == ""  # one warning per damaged file per process, already given

    for line in ("%hfmagic runs", f"%hfmagic compare {ids[1]} {ids[4]}", f"%hfmagic tag {ids[1]} x", "%hfmagic gc"):
        message = one_line_error(shell, capsys, line)
        assert message.startswith(f"the run store {place} is damaged") and "%hfmagic store repair" in message
    assert place.read_bytes() == damaged  # nothing above wrote to it

    repaired = shell.run_line_magic("hfmagic", "store repair")
    saved = RunStore(place).runs(limit=None)
    assert 0 < len(saved) < len(ids) and {r["id"] for r in saved} < set(ids)
    assert f"saved {len(saved)} runs ({sum(r['rows'] for r in saved)} rows)" in repaired
    assert f"{len(ids) - len(saved)} more could not be read" in repaired
    assert aside(place).read_bytes() == damaged and str(aside(place)) in repaired
    for run in saved:  # each as it was recorded, with the rows that could be read
        got, was = RunStore(place).get(run["id"]), before[run["id"]]
        assert {k: got[k] for k in ("kind", "status", "params", "provenance", "environment", "created", "pid")} == \
            {k: was[k] for k in ("kind", "status", "params", "provenance", "environment", "created", "pid")}
        assert got["rows"] and all(row in was["rows"] for row in got["rows"])
    assert shell.run_line_magic("hfmagic", "store repair").startswith(f"the run store {place} is not damaged")
    listed = shell.run_line_magic("hfmagic", "runs --limit 0")
    assert [r["id"] for r in listed.rows] == [r["id"] for r in saved]
    again = shell.run_line_magic("export_onnx", "tiny --levels fp32 --quantize none -o -q")
    assert again.run_id is not None and RunStore(place).get(again.run_id)["status"] == "ok"  # recording again


def test_a_file_of_garbage_is_moved_aside_and_replaced_by_a_fresh_store(shell, capsys, place):
    junk = os.urandom(20_000)
    place.write_bytes(junk)
    message = one_line_error(shell, capsys, "%hfmagic runs")
    assert message == (f"the run store {place} is damaged (file is not a database); %hfmagic store repair saves "
                       "every readable run into a fresh store and keeps the damaged file aside (until then "
                       "exports, benchmarks and evaluations go on unrecorded)")
    repaired = shell.run_line_magic("hfmagic", "store repair")
    assert repaired.startswith("saved 0 runs (0 rows)") and "(file is not a database)" in repaired
    assert aside(place).read_bytes() == junk
    assert shell.run_line_magic("hfmagic", "runs").rows == []


# -- housekeeping -----------------------------------------------------------------------------------
def test_runs_filters_tags_and_the_weights_beside_the_name(shell, capsys, place, tiny_bert, tmp_path):
    """Two different models bound to the same name: the list tells them apart by their weights."""
    other = make_tiny(tmp_path / "other", seed=1)
    shell.run_line_magic("load_model", f"{tiny_bert} --name tiny -q")
    a = shell.run_line_magic("export_onnx", "tiny --levels fp32 --quantize none -o -q")
    shell.run_line_magic("load_model", f"{other} --name tiny -q")
    b = shell.run_line_magic("export_onnx", "tiny --levels fp32 --quantize none --name tv -o -q")
    c = shell.run_line_magic("benchmark", f"tv {QUICK_BENCH}")
    store = RunStore(place)
    with store.connect() as con:  # a's run made three days ago
        con.execute("UPDATE runs SET created = created - 3 * 86400 WHERE id = ?", (a.run_id,))

    listed = shell.run_line_magic("hfmagic", "runs")
    by_id = {r["id"]: r for r in listed.rows}
    wa, wb = a.model.weights_sha256, b.model.weights_sha256
    assert wa != wb and by_id[a.run_id]["model"] == by_id[b.run_id]["model"] == "tiny"
    assert by_id[a.run_id]["weights"] == wa[:8] and by_id[b.run_id]["weights"] == wb[:8]
    assert wa[:8] in str(listed) and wb[:8] in str(listed)

    def ids(line):
        return [r["id"] for r in shell.run_line_magic("hfmagic", f"runs {line}").rows]

    assert ids("--kind benchmark") == [c.run_id]
    assert ids(f"--model {wa[:10]}") == [a.run_id] and ids("--model tiny") == [c.run_id, b.run_id, a.run_id]
    assert ids("--model tv") == [] and ids(f"--model {other}") == [c.run_id, b.run_id]  # by name or by source
    assert ids("--since 2d") == [c.run_id, b.run_id] and ids("--since 4d") == [c.run_id, b.run_id, a.run_id]
    day = time.strftime("%Y-%m-%d", time.localtime(time.time() - 2 * 86400))
    assert ids(f"--since {day}") == [c.run_id, b.run_id]
    assert ids("--kind export --since 2d") == [b.run_id]
    none = shell.run_line_magic("hfmagic", "runs --kind evaluate --since 1h")
    assert none.rows == [] and "no runs match --kind evaluate --since 1h" in str(none)
    assert "could not read --since 'yesterday'" in one_line_error(shell, capsys, "%hfmagic runs --since yesterday")

    said = shell.run_line_magic("hfmagic", f"tag {b.run_id[-6:]} second seed, same name")
    assert said == f"run {b.run_id} tagged 'second seed, same name'"
    shown = shell.run_line_magic("hfmagic", "runs")
    assert {r["id"]: r["tag"] for r in shown.rows} == {c.run_id: None, b.run_id: "second seed, same name",
                                                      a.run_id: None}
    assert "second seed, same name" in str(shown) and "second seed, same name" in shown._repr_html_()
    shell.run_line_magic("hfmagic", f"tag {b.run_id} --clear")
    assert RunStore(place).get(b.run_id)["tag"] is None
    assert "no run 'nosuch'" in one_line_error(shell, capsys, "%hfmagic tag nosuch hello")
    assert "give a tag's text, or --clear" in one_line_error(shell, capsys, f"%hfmagic tag {b.run_id}")


def test_delete_asks_first_in_the_shell(shell, capsys, place, monkeypatch):
    ids = many_runs(RunStore(place), 3)
    asked = []

    def answer(reply):
        def read(prompt=""):
            asked.append(prompt)
            return reply
        return read

    monkeypatch.setattr("builtins.input", answer("n"))
    assert shell.run_line_magic("hfmagic", f"delete {ids[0]} {ids[1][-6:]}") == "nothing deleted"
    assert asked == [f"delete 2 runs ({ids[0]}, {ids[1]}) and 8 rows from {place}? [y/N] "]
    assert len(RunStore(place).runs()) == 3
    monkeypatch.setattr("builtins.input", answer("y"))
    said = shell.run_line_magic("hfmagic", f"delete {ids[0]} {ids[1][-6:]}")
    assert said.startswith(f"deleted 2 runs ({ids[0]}, {ids[1]}) and 8 rows") and "%hfmagic gc" in said
    assert [r["id"] for r in RunStore(place).runs()] == [ids[2]]
    with sqlite3.connect(place) as con:
        assert con.execute("SELECT COUNT(*) FROM rows").fetchone()[0] == 4

    def never(prompt=""):
        raise AssertionError("--yes asked")

    monkeypatch.setattr("builtins.input", never)
    assert "no run 'nosuch'" in one_line_error(shell, capsys, f"%hfmagic delete {ids[2]} nosuch --yes")
    assert len(RunStore(place).runs()) == 1  # every id is checked before anything goes
    shell.run_line_magic("hfmagic", f"delete {ids[2]} --yes")
    assert RunStore(place).runs() == []
    live = RunStore(place).start("benchmark", {}, {})  # this process is still recording it
    assert "still being recorded" in one_line_error(shell, capsys, f"%hfmagic delete {live.id} --yes")


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def test_gc_removes_only_the_variants_no_run_refers_to(shell, capsys, place, tiny_bert, tmp_path):
    shell.user_ns["tiny"] = load_model(tiny_bert)
    recorded = shell.run_line_magic("export_onnx", "tiny --levels fp32,O2 --quantize none -o -q")
    shell.run_line_magic("config", "HFMagic.store = False")
    unrecorded = shell.run_line_magic("export_onnx", "tiny --levels O1 --quantize none -o -q")
    shell.run_line_magic("config", "HFMagic.store = True")
    folders = {v.name: v.path.parent for v in list(recorded)[1:] + [unrecorded["O1"]]}
    root = folders["fp32"].parent
    (root / "not-ours").mkdir()
    o1_mb = folder_mb(folders["O1"])

    dry = shell.run_line_magic("hfmagic", "gc --dry-run")
    assert [(r["variant"], r["action"]) for r in dry.rows] == [("O1", "would remove")]
    assert dry.rows[0]["size"] == pytest.approx(o1_mb) and f"would free {o1_mb:.1f} MB" in str(dry)
    assert all(f.is_dir() for f in folders.values())  # --dry-run deletes nothing

    done = shell.run_line_magic("hfmagic", "gc")
    assert [(r["variant"], r["action"]) for r in done.rows] == [("O1", "removed")]
    assert f"freed {o1_mb:.1f} MB: 1 cached variant no recorded run refers to" in str(done)
    assert "kept 2 variants" in str(done) and "left alone: 1 folder" in str(done)
    assert not folders["O1"].exists() and folders["fp32"].is_dir() and folders["O2"].is_dir()
    assert (root / "not-ours").is_dir()

    # a run that names the O2 file by its path only still keeps it
    store = RunStore(place)
    run = store.start("benchmark", {}, {"model": {"name": "tiny"}})
    run.add_row({"variant": "O2", "status": "ok", "path": str(recorded["O2"].path)})
    run.finish("ok")
    shell.run_line_magic("hfmagic", f"delete {recorded.run_id} --yes")
    gone = shell.run_line_magic("hfmagic", "gc")
    assert [r["variant"] for r in gone.rows] == ["fp32"] and not folders["fp32"].exists() and folders["O2"].is_dir()
    again = shell.run_line_magic("export_onnx", "tiny --levels fp32,O2 --quantize none -o -q")
    assert again["fp32"].ok and again["fp32"].path.is_file()  # rebuilt: the cache is only a cache
    assert shell.run_line_magic("hfmagic", "gc").rows == []
    assert (root / folders["O2"].name / META).is_file()
