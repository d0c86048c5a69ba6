"""The recipe space of issue 25 on a tiny BERT: the ``fused`` level (onnxruntime's transformer
optimizer), dynamic int8 named by its settings (weight type, per-channel, reduce_range, format), each
built and validated through %export_onnx; %optimize's pruned space, every candidate left out in its
trace with the reason, a failing setting said once rather than per level, and the rebuild line of a
named recipe giving the same file."""

import collections
import subprocess
import sys

import pytest

from tests.support.tiny import labelled


def cell(shell, code: str, name: str):
    res = shell.run_cell(code, store_history=False)
    assert res.success, res.error_in_exec
    return shell.user_ns[name]


def contrib_ops(path) -> collections.Counter:
    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node if n.domain == "com.microsoft")


def test_fused_level_and_named_dynamic_settings_through_the_magic(shell, tiny_bert):
    shell.run_line_magic("load_model", f"{tiny_bert} --name rec_bert -q")
    v = cell(shell, "%export_onnx rec_bert --levels fused --quantize dynamic --weight-type uint8 --no-per-channel "
                    "-q --name rec_v", "rec_v")
    assert v.names == ["torch", "fused", "fused-int8-u8-pt"]  # Olive's pick on BERT, by name
    fused, pick = v["fused"], v["fused-int8-u8-pt"]
    assert fused.ok and pick.ok, (fused.error, pick.error)
    ops = contrib_ops(fused.path)  # the transformer optimizer's fusions, in com.microsoft ops
    assert ops["Attention"] == 2 and ops["SkipLayerNormalization"] >= 2 and ops["EmbedLayerNormalization"] == 1, ops
    assert contrib_ops(pick.path)["QAttention"] == 2  # its attention quantized as one op
    assert fused.validation["cosine"] > 0.999 and pick.validation["cosine"] > 0.9
    assert pick.quantization == "dynamic int8 (QOperator), uint8 asymmetric weights per-tensor, uint8 activations"
    assert "optimize_model" in fused.cli_command and "QuantType.QUInt8" in pick.cli_command
    assert "per_channel=False" in pick.cli_command and "reduce_range=False" in pick.cli_command
    # every setting is its own file: reduce_range and the weight type are in the cache key
    rr = cell(shell, "%export_onnx rec_bert --levels fused --quantize dynamic --weight-type uint8 --no-per-channel "
                     "--reduce-range -q --name rec_rr", "rec_rr")["fused-int8-u8-pt-rr"]
    s8 = cell(shell, "%export_onnx rec_bert --levels fused --quantize dynamic --weight-type int8 --no-per-channel "
                     "-q --name rec_s8", "rec_s8")["fused-int8-s8-pt"]
    assert rr.ok and s8.ok and len({pick.sha256, rr.sha256, s8.sha256}) == 3
    assert rr.path.parent != pick.path.parent != s8.path.parent
    assert "reduce_range (7-bit weights)" in rr.quantization and "int8 symmetric" in s8.quantization
    again = cell(shell, "%export_onnx rec_bert --levels fused --quantize dynamic --weight-type uint8 --no-per-channel "
                        "-q --name rec_again", "rec_again")
    assert again["fused-int8-u8-pt"].sha256 == pick.sha256 and "came from the cache" in " ".join(again.notes)


def test_bad_recipe_options_are_one_line(shell, tiny_bert):
    from IPython.core.error import UsageError

    from hfmagic.core.errors import HFMagicError
    from hfmagic.export.api import export_onnx

    shell.run_line_magic("load_model", f"{tiny_bert} --name rec_bad -q")
    for line, said in [("--weight-type int4", "--weight-type"),
                       ("--quant-format qdq --quantize dynamic", "--quant-format qdq is for static int8"),
                       ("--weight-type uint8 --quantize none", "use --quantize dynamic"),
                       ("--quant-format qoperator --quantize nncf", "--quant-format qoperator is dynamic int8's"),
                       ("--levels fuse", "unknown level 'fuse'")]:
        with pytest.raises(UsageError) as err:
            shell.run_line_magic("export_onnx", f"rec_bad {line} -q")
        assert said in str(err.value) and "\n" not in str(err.value), str(err.value)
    for kwargs in ({"weight_type": "u8"}, {"reduce_range": "yes"}, {"quant_format": "QDQ"}):
        with pytest.raises(HFMagicError) as err:
            export_onnx(str(tiny_bert), quantize="dynamic", progress=False, **kwargs)
        assert "\n" not in str(err.value) and str(next(iter(kwargs.values()))) in str(err.value)
    done = subprocess.run([sys.executable, "-m", "hfmagic", "export", str(tiny_bert), "--quant-format", "qdq",
                           "--quantize", "dynamic"], capture_output=True, text=True)
    assert done.returncode != 0 and done.stderr.startswith("hfmagic: --quant-format qdq"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_named_setting_benchmarked_from_the_model_says_how_to_build_it(shell, tiny_bert):
    """%benchmark builds the variants it is named by the levels' names; a named dynamic int8 setting
    takes an export of its own, and the one line gives it, which then benchmarks as named."""
    from IPython.core.error import UsageError

    shell.run_line_magic("load_model", f"{tiny_bert} --name rec_named -q")
    with pytest.raises(UsageError) as err:
        shell.run_line_magic("benchmark", "rec_named --variants torch,fused-int8-u8-pt -q")
    said = str(err.value)
    assert "\n" not in said and "--levels fused --quantize dynamic --weight-type uint8 --no-per-channel" in said, said
    export = said.split("build it first with ")[1].split(" (the same options")[0].replace("MODEL", "rec_named")
    shell.run_line_magic("export_onnx", export.removeprefix("%export_onnx ") + " -q")
    bench = shell.run_line_magic("benchmark", "v --variants fused-int8-u8-pt --batch-sizes 1 --seq-lens 8 --threads 1 "
                                 "--warmup 1 --min-runs 3 --min-time 0.05 --max-time 1 -q -o")
    assert [(r["variant"], r["status"]) for r in bench.rows] == [("fused-int8-u8-pt", "ok")]


def _trace(result, stage="build"):
    return [t for t in result.trace if t["stage"] == stage]


@pytest.mark.slow
def test_optimize_builds_the_pruned_space_and_traces_every_candidate_left_out(tiny_bert, tmp_path):
    from hfmagic import load_model
    from hfmagic.export.api import export_onnx
    from hfmagic.optimizing.api import optimize
    from hfmagic.optimizing.recipes import rebuild_recipe
    from hfmagic.optimizing.space import EVERY_SETTING, KEEP_LEVELS, SETTINGS, build_dynamic

    result = optimize(str(tiny_bert), labelled(48, seed=3), backends=["onnxruntime"], threads=1, min_time=0.05,
                      samples=16, progress=False)
    build = [t for t in result.trace if t["stage"] == "build"]
    lines = {t["candidate"]: t for t in build}
    levels = ("fp32", "O1", "O2", "O3", "fused")
    # every level's line: kept (every setting built) or dropped with its screened time and the reason
    outcome = {lv: lines[f"{lv}-{EVERY_SETTING}"] for lv in levels}
    kept = [lv for lv, t in outcome.items() if t["outcome"] == "kept"]
    assert len(kept) == KEEP_LEVELS, build
    for lv, t in outcome.items():
        assert t["objective"] is not None and t["reason"], t
        if lv not in kept:
            assert t["outcome"] == "dropped" and "not built" in t["reason"] and "behind" in t["reason"], t
    # dynamic QDQ: said once, on the first level, with the levels it was not tried on
    qdq = [t for t in build if t["candidate"].startswith("dynamic QDQ")]
    assert len(qdq) == 1 and qdq[0]["reason"].startswith("not built on fp32 (")
    assert qdq[0]["reason"].endswith("not tried on O1, O2, O3, fused, where it would fail for the same reason")
    # every level, its int8 at the CPU's preset, and every setting on the kept levels went on to be timed
    timed = {t["candidate"].split("/")[0] for t in result.trace if t["stage"] != "build"}
    twins = {"int8", "O1-int8", "O2-int8", "O3-int8", "fused-int8"}
    assert set(levels) | twins <= timed, timed
    named = {f"{lv}-{s.suffix()}".removeprefix("fp32-") for lv in kept for s in SETTINGS}
    twice = {c for c, t in lines.items() if "not built twice" in (t["reason"] or "")}  # the preset's own settings
    assert named - twice <= timed, named - twice - timed
    builds = len(levels) + len(twins) + len(named - twice)
    assert builds <= 5 * 2 + KEEP_LEVELS * len(SETTINGS) < 5 + 5 * len(SETTINGS) * 2  # the product: 85
    # the rebuild line of a named setting (what the result shows when one wins) builds the same file
    name = sorted(named - twice)[0]
    model = load_model(str(tiny_bert))
    search = search_for(model)
    build_dynamic(search, [name.split("-int8")[0] if not name.startswith("int8") else "fp32"])  # from the cache
    recipe = rebuild_recipe(search, {"variant": name, "backend": "onnxruntime"})
    assert "weight_type=" in recipe["python"] and "reduce_range=" in recipe["python"], recipe
    again = export_onnx(model, output=tmp_path / "rebuilt", force=True, progress=False, **recipe["export_onnx"])
    assert again[name].sha256 == recipe["sha256"], recipe


def search_for(model):
    from hfmagic.optimizing.search import Search

    return Search(model, None, 99.0, "p50", 1, 16, ["onnxruntime"], [1], None, None, 16, False, {})


@pytest.mark.slow
def test_a_setting_that_fails_is_said_once_not_per_level(tiny_bert, tmp_path, monkeypatch):
    """onnxruntime refusing one setting (forced here: its quantize_dynamic raises for uint8 with
    reduce_range) leaves one trace line naming where it failed and where it was not tried."""
    import json
    import shutil

    import onnxruntime.quantization as ortq

    from hfmagic import load_model
    from hfmagic.optimizing.space import build_dynamic

    real = ortq.quantize_dynamic

    def refusing(*args, **kwargs):
        if kwargs.get("reduce_range") and kwargs.get("weight_type") == ortq.QuantType.QUInt8:
            raise ValueError("reduce_range is not supported with uint8 weights here")
        return real(*args, **kwargs)

    monkeypatch.setattr(ortq, "quantize_dynamic", refusing)
    folder = tmp_path / "bert"  # a config of its own: cache keys of its own, so every setting is built here
    shutil.copytree(tiny_bert, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"issue": 25}))
    search = search_for(load_model(str(folder)))
    build_dynamic(search, ["O2", "fused"])  # two levels: both get every setting, no screen needed
    failed = [t for t in search.trace if t["candidate"].startswith("int8-u8-") and t["candidate"].endswith("-rr")]
    assert [t["candidate"] for t in failed] == ["int8-u8-pc-rr", "int8-u8-pt-rr"], search.trace
    for t in failed:
        assert t["reason"].startswith("not built on O2 (build failed: ValueError: reduce_range is not supported")
        assert "not tried on fused" in t["reason"]
    assert "fused-int8-u8-pt" in search.variants and "fused-int8-u8-pt-rr" not in search.variants
    assert all(search.variants[n].ok for n in search.variants if n != "torch")
