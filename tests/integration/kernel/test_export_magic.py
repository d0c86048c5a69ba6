"""%export_onnx through a real shell: binding, records and the cache, bad input in one line with the
cache left consistent, unsupported architectures and tasks named."""

from pathlib import Path

import pytest
from IPython.core.error import UsageError

from hfmagic.onnx import build as onnxbuild
from hfmagic.models.handle import load_model
from tests.support.cache import entries


def one_line_error(shell, capsys, line):
    res = shell.run_cell(line, store_history=False)
    out = capsys.readouterr()
    assert not res.success and isinstance(res.error_in_exec, UsageError), res.error_in_exec
    lines = [ln for ln in (out.out + out.err).splitlines() if ln.strip() and "variant/s" not in ln]  # not the bar
    assert "Traceback" not in "".join(lines) and len(lines) == 1, lines
    return str(res.error_in_exec)


def test_magic_binds_records_and_hits_the_cache(shell, tiny_bert, cache, monkeypatch):
    shell.user_ns["tiny"] = load_model(tiny_bert)
    first = shell.run_line_magic("export_onnx", "tiny --levels fp32,O2 --quantize none --name tv -o -q")
    assert shell.user_ns["tv"] is first and first.names == ["torch", "fp32", "O2"]
    assert sorted(entries(cache)["complete"]) == ["O2", "fp32"] and entries(cache)["other"] == []
    from hfmagic.store.db import default_store

    run = default_store().get(first.run_id)
    assert run["kind"] == "export" and run["status"] == "ok"
    assert [r["variant"] for r in run["rows"]] == ["fp32", "O2"] and not run["rows"][0]["cached"]
    assert run["provenance"]["files"] == {"fp32": first["fp32"].sha256, "O2": first["O2"].sha256}
    assert run["params"]["levels"] == ["fp32", "O2"] and run["params"]["quantize"] == "none"

    def no_rebuild(*args, **kwargs):
        raise AssertionError("a cached variant was rebuilt")

    with monkeypatch.context() as m:
        m.setattr(onnxbuild, "export_fp32", no_rebuild)
        m.setattr(onnxbuild, "optimize", no_rebuild)
        again = shell.run_line_magic("export_onnx", "tiny --levels fp32,O2 --quantize none -o -q")
    assert [v.path for v in again] == [v.path for v in first]
    assert again["O2"].build_seconds == first["O2"].build_seconds and "came from the cache" in " ".join(again.notes)
    recorded = default_store().get(again.run_id)
    assert recorded["rows"][1]["cached"] is True and recorded["summary"]["notes"] == again.notes

    mtime = first["O2"].path.stat().st_mtime_ns
    forced = shell.run_line_magic("export_onnx", "tiny --levels fp32,O2 --quantize none --force -o -q")
    assert forced["O2"].path == first["O2"].path and forced["O2"].path.stat().st_mtime_ns != mtime
    assert entries(cache)["other"] == []


def _funnel(folder: Path) -> Path:
    """A tiny Funnel Transformer: a transformers architecture optimum cannot export to ONNX."""
    from transformers import FunnelConfig, FunnelModel

    from tests.support.tiny import make_tokenizer

    tokenizer = make_tokenizer("bert")
    config = FunnelConfig(vocab_size=len(tokenizer), d_model=32, n_head=2, d_head=16, d_inner=64, block_sizes=[1, 1])
    FunnelModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("args, message", [
    ("--levels fp32,O7", "unknown level 'O7'; choose from fp32, O1, O2, O3, O4"),
    ("--opset 30", "the exporter cannot write opset 30; use 7..23"),
    ("--opset 9 --quantize none --levels fp32", "the exporter refused opset 9 for bert"),
    ("--output {tmp}/a-file/sub", "cannot write to {tmp}/a-file/sub"),
    ("--quantize static", "static int8 needs calibration texts: pass --calibration DATA"),
    ("--quantize static --calibration numbers", "calibration data: <DataFrame 3 rows> has no text column: none of "
                                                "its columns (a, b) is named text"),
    ("--quantize static --calibration words --text-column body", "calibration data: no column 'body'"),
    ("--quantize dynamic --calibration words", "--calibration is for static int8"),
])
def test_bad_input_is_one_line_and_the_cache_stays_consistent(shell, capsys, tiny_bert, cache, tmp_path,
                                                              args, message):
    import pandas as pd

    (tmp_path / "a-file").write_text("not a folder")
    shell.user_ns.update(tiny=load_model(tiny_bert), numbers=pd.DataFrame({"a": [1, 2, 3], "b": [4.0, 5.0, 6.0]}),
                         words=pd.DataFrame({"text": ["one", "two"]}))
    error = one_line_error(shell, capsys, f"%export_onnx tiny {args.format(tmp=tmp_path)} --name bad")
    assert message.format(tmp=tmp_path) in error
    assert "bad" not in shell.user_ns
    assert entries(cache)["other"] == []


def test_unsupported_architecture_and_task_name_what_is_supported(shell, capsys, tiny_factory, tmp_path, cache):
    shell.user_ns["qa"] = load_model(tiny_factory("gpt2", "question-answering"))
    error = one_line_error(shell, capsys, "%export_onnx qa")
    assert "cannot export a gpt2 model for question-answering; for gpt2 it supports: feature-extraction, " \
           "text-generation, text-classification, token-classification" in error
    shell.user_ns["funnel"] = load_model(_funnel(tmp_path / "funnel"))
    error = one_line_error(shell, capsys, "%export_onnx funnel")
    assert "does not support the funnel architecture (FunnelModel); for feature-extraction it supports: " in error
    assert "bert, " in error and entries(cache) == {"complete": [], "other": []}


@pytest.mark.slow
def test_demo_minilm_variants(shell, demo_folder):
    variants = shell.run_line_magic("export_onnx", "demo -o -q")
    assert variants.names == ["torch", "fp32", "O2", "int8", "O2-int8"]
    assert all(v.ok for v in variants), [(v.name, v.error) for v in variants]
    assert variants["fp32"].validation["max_abs_diff"] < 1e-4 and variants["O2"].fused_nodes > 0
    assert variants["int8"].validation["cosine"] > 0.95 and variants["int8"].validation["argmax_agreement"] >= 0.875
    assert variants["int8"].size_bytes < variants["fp32"].size_bytes / 3
    assert variants["fp32"].validation["inputs_from"] == "the model's own held-out texts"
