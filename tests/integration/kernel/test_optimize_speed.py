"""%optimize's search made shorter without promising less (issue 25, item 4): the named dynamic int8
settings screened on onnxruntime only (their level's preset is tried on OpenVINO, one trace line says
so), the fixed recipes scored in one evaluation per runtime (the reference runs once for them), and a
whole search that writes nothing outside hfmagic's cache folder (no torch.compile cache in the
temporary folder, nothing in the home or working folder)."""

import os
import subprocess
import sys

import pytest

from tests.support.tiny import labelled


def search_on(model, data, backends):
    from hfmagic.optimizing.search import Search

    search = Search(model, data, 99.0, "p50", 1, 16, backends, [1], None, None, 16, False, {})
    search.min_time = 0.05
    return search


@pytest.mark.slow  # about a minute: 18 builds, a sweep of 23 configurations, two evaluations
def test_named_settings_screen_on_onnxruntime_and_fixed_recipes_share_one_evaluation(tiny_bert, monkeypatch):
    pytest.importorskip("openvino")
    from hfmagic import load_model
    from hfmagic.optimizing import search as mod
    from hfmagic.optimizing.space import EVERY_SETTING, build_dynamic

    search = search_on(load_model(str(tiny_bert)), labelled(24, seed=5), ["onnxruntime", "openvino", "torch"])
    build_dynamic(search, ["fp32", "O2"])  # two levels: every setting built on both, no level screen
    named = [n for n in search.variants if n.startswith(("int8-", "O2-int8-"))]
    assert len(named) >= 12, search.variants
    swept = []
    real_benchmark = mod.benchmark

    def recorded(vset, **kwargs):  # the real sweep, the configurations it timed recorded
        result = real_benchmark(vset, **kwargs)
        swept.extend((r["variant"], r["backend"]) for r in result.rows)
        return result

    monkeypatch.setattr(mod, "benchmark", recorded)
    search.screen()
    timed = set(swept)
    for name in named:  # on onnxruntime, never on OpenVINO
        assert (name, "onnxruntime") in timed and (name, "openvino") not in timed, name
    for preset in ("int8", "O2-int8", "fp32", "O2"):  # the presets and the float graphs on both
        assert {(preset, "onnxruntime"), (preset, "openvino")} <= timed, preset
    lines = [t for t in search.trace if t["candidate"].endswith(f"-{EVERY_SETTING}/openvino")]
    assert [t["candidate"].split("-int8")[0] for t in lines] == ["fp32", "O2"], search.trace
    for t, preset in zip(lines, ("int8", "O2-int8")):
        assert t["stage"] == "screen" and t["outcome"] == "dropped", t
        assert t["reason"].startswith(f"not screened on OpenVINO: each setting is {preset}'s graph with other "
                                      f"weights, and {preset}/openvino was screened ("), t

    calls = []
    real = mod.evaluate

    def counted(vset, data, **kwargs):  # the real evaluation, its calls counted
        calls.append(([v.name for v in vset], kwargs.get("backend")))
        return real(vset, data, **kwargs)

    monkeypatch.setattr(mod, "evaluate", counted)
    search.confirm()  # nothing gated: every fixed recipe is scored here
    assert sorted(calls, key=str) == sorted([(["torch", "int8", "O2-int8"], None), (["torch", "fp32"], "openvino")],
                                            key=str), calls
    confirmed = {t["candidate"] for t in search.trace if t["stage"] == "confirm"}
    assert {"int8/onnxruntime", "O2-int8/onnxruntime", "fp32/openvino"} <= confirmed, search.trace


@pytest.mark.slow
def test_a_search_writes_nothing_outside_the_cache_folder(tiny_bert, tmp_path):
    """The command line's whole search (every backend installed, torch.compile included) run in an
    empty working folder with an empty home and temporary folder: afterwards all three are still
    empty and the model's folder is as it was; everything it kept is under HFMAGIC_CACHE_DIR."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_bert, folder)
    before = sorted(p.name for p in folder.iterdir())
    labelled(40, seed=6).to_csv(tmp_path / "texts.csv", index=False)
    work, home, tmp, cache = (tmp_path / n for n in ("work", "home", "tmp", "cache"))
    for d in (work, home, tmp):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (
        "HF_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR", "IPYTHONDIR", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR",
        "HOME_FOR_TESTS", "HFMAGIC_STORE")}  # where a user's libraries write by default: home and /tmp
    env.update(HOME=str(home), TMPDIR=str(tmp), HFMAGIC_CACHE_DIR=str(cache))
    done = subprocess.run([sys.executable, "-m", "hfmagic", "optimize", str(folder), "--data",
                           str(tmp_path / "texts.csv"), "--threads", "1", "--min-time", "0.05", "--samples", "16"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "winner" in done.stdout or "no winner" in done.stdout, done.stdout[-3000:]
    for d in (work, home, tmp):
        assert list(d.rglob("*")) == [], (d.name, sorted(str(p.relative_to(d)) for p in d.rglob("*"))[:20])
    assert sorted(p.name for p in folder.iterdir()) == before
    assert any(cache.rglob("*.onnx")) and (cache / "runs.sqlite").is_file()


def test_ctrl_c_while_the_levels_int8_is_screened_keeps_every_built_variant_in_the_trace(tiny_bert, monkeypatch):
    """Ctrl-C in the build stage's own sweep (each level's int8 at the CPU's preset, before the named
    settings are built): the search returns, says where it stopped, and every variant built so far
    is in the trace with why it went no further."""
    from hfmagic.optimizing import space
    from hfmagic.optimizing.api import optimize

    def interrupted(search, twins):
        raise KeyboardInterrupt

    monkeypatch.setattr(space, "_screen_levels", interrupted)  # Ctrl-C once every level's graph and twin is built
    result = optimize(str(tiny_bert), labelled(24, seed=5), backends=["onnxruntime", "torch"], threads=1,
                      progress=False)
    assert result.interrupted and result.winner is None and result.outcome.startswith("interrupted during building")
    lines = {t["candidate"]: t for t in result.trace}
    for name in ("fp32", "int8", "O1", "O1-int8", "O2", "O2-int8", "O3", "O3-int8", "fused", "fused-int8"):
        t = lines[f"{name}/onnxruntime"]
        assert (t["stage"], t["outcome"]) == ("screen", "not reached"), t
        assert t["reason"] == "built; interrupted (Ctrl-C) before it was screened", t
    assert "interrupted" in " ".join(result.notes)
