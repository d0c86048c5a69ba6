"""hfmagic.export.export_onnx(): every variant kind, architectures, validation figures, the cache (interrupted,
killed, full disk), failed and diverging steps kept with their reasons, sharded weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hfmagic.onnx import build as onnxbuild
from hfmagic.core.errors import BuildError, HFMagicError, ModelSourceError, UsageProblem
from hfmagic.export.api import export_onnx
from hfmagic.core.hashing import file_sha256
from hfmagic.models.handle import load_model
from tests.support.cache import entries
from tests.support.tiny import sentences

ARCHS = ["bert", "distilbert", "roberta", "albert", "electra", "mpnet"]
TASKS = ["text-classification", "feature-extraction", "token-classification", "question-answering"]


def test_every_variant_kind_on_tiny_bert(tiny_bert, cache):
    variants = export_onnx(str(tiny_bert), levels=["fp32", "O1", "O2", "O3", "O4"], quantize="auto",
                           calibration=sentences(40, seed=1), samples=32)
    assert variants.names == ["torch", "fp32", "O1", "O2", "O3", "O4", "int8", "O1-int8", "O2-int8",
                              "O3-int8", "int8-static"]
    assert all(v.ok for v in variants), [(v.name, v.error) for v in variants]
    by = {v.name: v for v in variants}
    assert by["torch"].path is None and by["torch"].folder == tiny_bert
    for v in list(variants)[1:]:
        assert v.sha256 == file_sha256(v.path) and v.size_bytes == v.path.stat().st_size
        assert (v.folder / "config.json").exists() and (v.folder / "tokenizer.json").exists()
        assert v.validation["texts"] == 8 and v.validation["outputs"] == ["logits"]
        assert v.validation["argmax_agreement"] == 1.0 and v.build_seconds > 0
    for name in ("fp32", "O1", "O2", "O3"):  # the same function: differences at float rounding
        assert by[name].validation["max_abs_diff"] < 1e-5 and by[name].validation["cosine"] > 0.99999
    assert by["fp32"].fused_nodes == 0 and by["O2"].fused_nodes > 0 and by["O2"].nodes < by["fp32"].nodes

    import onnx

    def op_types(v):
        return {n.op_type for n in onnx.load(str(v.path)).graph.node}

    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= op_types(by["int8"])
    assert "QAttention" in op_types(by["O2-int8"])  # the fused attention itself was quantized
    assert "QuantizeLinear" in op_types(by["int8-static"])
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(by["O4"].path)).graph.initializer)
    for name in ("int8", "O2-int8", "int8-static"):  # quantized: close but no longer exact
        assert 0 < by[name].validation["max_abs_diff"] and by[name].validation["cosine"] > 0.99
        assert by[name].size_bytes < by["fp32"].size_bytes
    isa = onnxbuild.int8_isa()
    assert by["int8"].quantization == f"dynamic {isa} per-channel"
    assert by["int8-static"].quantization == f"static {isa} per-channel, minmax calibration"
    assert by["fp32"].cli_command == f"optimum-cli export onnx --model {tiny_bert} --task text-classification onnx/fp32"
    assert by["O3"].cli_command == "optimum-cli onnxruntime optimize --onnx_model onnx/fp32 -O3 -o onnx/O3"
    assert by["int8"].cli_command == (f"optimum-cli onnxruntime quantize --onnx_model onnx/fp32 --{isa} "
                                      "--per_channel -o onnx/int8")
    assert "quantize_dynamic" in by["O2-int8"].cli_command and "DefaultTensorType" in by["O2-int8"].cli_command
    notes = " ".join(variants.notes)
    assert "O4 is fp16 meant for GPUs" in notes and "O4 (fp16) gets no int8 twin" in notes
    assert "calibrated on 32 texts" in notes
    text, frame = str(variants), variants.to_pandas()
    import html

    page = variants._repr_html_()
    assert "how each was built" in text and "how each was built" in page  # notebooks show HTML
    assert all(html.escape(v.cli_command) in page for v in variants if v.cli_command)
    assert list(frame["variant"]) == variants.names and frame.loc[3, "fused_nodes"] == by["O2"].fused_nodes

    from optimum.onnxruntime import ORTModelForSequenceClassification  # the contract benchmark relies on

    ort = ORTModelForSequenceClassification.from_pretrained(by["O2-int8"].folder, file_name=by["O2-int8"].path.name)
    assert ort.config.num_labels == 3


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("arch", ARCHS)
def test_architectures_export_and_validate(tiny_factory, tmp_path, arch, task):
    folder = tiny_factory(arch, task)
    variants = export_onnx(load_model(folder, task=task), levels=["fp32"], quantize="none", output=tmp_path)
    fp32 = variants["fp32"]
    assert fp32.ok, fp32.error
    assert fp32.path == tmp_path / "fp32" / "model.onnx"
    assert fp32.validation["cosine"] > 0.9999 and fp32.validation["max_abs_diff"] < 1e-3
    if task == "feature-extraction":
        assert fp32.validation["argmax_agreement"] is None
    else:
        assert fp32.validation["argmax_agreement"] == 1.0


def test_gpt2_feature_extraction(tiny_factory, tmp_path):
    variants = export_onnx(str(tiny_factory("gpt2", "feature-extraction")), levels=["fp32"], quantize="none",
                           output=tmp_path)
    assert variants["fp32"].ok and variants["fp32"].validation["outputs"] == ["last_hidden_state"]
    assert variants["fp32"].validation["cosine"] > 0.9999


def test_cached_variants_keep_their_validation_and_a_resaved_folder_is_refused(tiny_bert, cache, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    handle = load_model(folder)
    first = export_onnx(handle, levels=["fp32"], quantize="none")
    calibration = sentences(20, seed=2)
    mixed = export_onnx(handle, levels=["fp32"], quantize="static", calibration=calibration, samples=20)
    assert mixed["fp32"].path == first["fp32"].path  # from the cache, validated on the sample sentences
    assert mixed["int8-static"].validation["inputs_from"] == "the first texts of <list of 20 texts>"
    assert ("validated on fp32 on 8 texts (hfmagic's sample sentences); int8-static on 8 texts (the first "
            "texts of <list of 20 texts>)") in " ".join(mixed.notes)

    weights = load_file(folder / "model.safetensors")
    save_file({k: v + 0.01 * torch.randn_like(v) for k, v in weights.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(HFMagicError, match=r"the weights in .* changed after model was loaded; load it again"):
        export_onnx(handle, levels=["fp32"], quantize="none")  # its hash and its PyTorch model are stale
    again = export_onnx(load_model(folder), levels=["fp32"], quantize="none")
    assert again["fp32"].ok and again["fp32"].path != first["fp32"].path  # a new key: rebuilt, not the stale entry
    assert again["fp32"].sha256 != first["fp32"].sha256


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibrators_build_a_bert_and_say_what_stayed_float(tiny_bert, cache, method):
    """A BERT's attention mask is a -3.4e38 constant, which onnxruntime's histogram calibrators cannot
    bin (numpy's "Too many bins"): the operator reading it stays float and the variant says so."""
    import onnx

    from hfmagic.onnx.build import unbinnable

    built = export_onnx(load_model(tiny_bert), levels=["fp32"], quantize="static", calibration=sentences(16, seed=3),
                        samples=16, calibration_method=method)
    fp32, static = built["fp32"], built["int8-static"]
    kept = unbinnable(fp32.path, ["Where", "MatMul", "Add", "Mul"])
    assert list(kept) == ["Where"] and "-3.4e+38" in kept["Where"]
    assert static.path is not None and not (static.error or "").startswith("build failed"), static.error
    assert static.validation.get("cosine") is not None  # it ran beside PyTorch
    assert "operators_to_quantize without Where" in static.cli_command and "Where kept in float" in static.cli_command
    ops = {n.op_type for n in onnx.load(str(static.path)).graph.node}
    assert "QuantizeLinear" in ops and "Where" in ops


def test_interrupted_build_leaves_nothing_half_written(tiny_bert, cache, monkeypatch):
    def interrupted(source, out, level, device):
        (out / "model_optimized.onnx").write_bytes(b"half a graph")
        raise KeyboardInterrupt

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(onnxbuild, "optimize", interrupted)
        export_onnx(str(tiny_bert), levels=["fp32", "O2"], quantize="none")
    assert entries(cache) == {"complete": ["fp32"], "other": []}
    from hfmagic.store.db import default_store

    assert default_store().runs(kind="export", limit=1)[0]["status"] == "interrupted"
    variants = export_onnx(str(tiny_bert), levels=["fp32", "O2"], quantize="none")
    assert variants["O2"].ok and sorted(entries(cache)["complete"]) == ["O2", "fp32"]


def test_killed_process_leaves_no_entry_and_is_swept(tiny_bert, cache):
    marker = cache.parent / "started"
    code = f"""
import time
from pathlib import Path
from hfmagic.onnx import build as onnxbuild
from hfmagic.export.api import export_onnx

def slow_export(model, out, opset, device):
    (out / "model.onnx").write_bytes(b"half a graph")
    Path({str(marker)!r}).touch()
    time.sleep(120)

onnxbuild.export_fp32 = slow_export
export_onnx({str(tiny_bert)!r}, levels=["fp32"], quantize="none")
"""
    env = dict(os.environ, HFMAGIC_CACHE_DIR=str(cache.parent))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "the build never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = entries(cache)
    assert left["complete"] == [] and len(left["other"]) == 1 and left["other"][0].startswith(".tmp-")
    variants = export_onnx(str(tiny_bert), levels=["fp32"], quantize="none")
    assert variants["fp32"].ok and entries(cache) == {"complete": ["fp32"], "other": []}


def test_full_disk_mid_build_is_one_error_and_leaves_no_temp(tiny_bert, cache, monkeypatch):
    def full(model, out, opset, device):
        (out / "model.onnx").write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnxbuild, "export_fp32", full)
    with pytest.raises(BuildError, match=r"no space left in .* while building fp32; free some space"):
        export_onnx(str(tiny_bert), levels=["fp32"], quantize="none")
    assert entries(cache) == {"complete": [], "other": []}


def test_a_failed_step_stays_with_its_reason(tiny_bert, cache, monkeypatch):
    def broken(source, out, level, device):
        raise RuntimeError("fusion pass crashed\nwith a long trace")

    monkeypatch.setattr(onnxbuild, "optimize", broken)
    variants = export_onnx(str(tiny_bert), levels=["fp32", "O2"], quantize="auto")
    assert variants.names == ["torch", "fp32", "O2", "int8", "O2-int8"]
    assert variants["O2"].error == "build failed: RuntimeError: fusion pass crashed"
    assert variants["O2-int8"].error.startswith("not built: O2, which it starts from, failed")
    assert variants["fp32"].ok and variants["int8"].ok
    assert "build failed: RuntimeError" in str(variants)
    assert sorted(entries(cache)["complete"]) == ["fp32", "int8"] and entries(cache)["other"] == []


def test_a_diverging_variant_is_kept_with_its_figures(tiny_bert, cache, monkeypatch):
    from hfmagic.onnx import validation

    monkeypatch.setitem(validation.COSINE_FLOOR, "int8", 0.999999999)  # tiny BERT's int8 is ~0.9994
    variants = export_onnx(str(tiny_bert), levels=["fp32"], quantize="dynamic")
    int8 = variants["int8"]
    assert int8.path.is_file() and int8.validation["cosine"] < 0.999999999
    assert int8.error.startswith("diverged from PyTorch: worst-text cosine 0.99")
    assert variants["fp32"].ok


def test_nan_outputs_are_not_reported_as_no_difference():
    import math

    import numpy as np

    from hfmagic.onnx.validation import Reference, divergence

    ref = object.__new__(Reference)  # the figures alone, on outputs made up here
    from hfmagic.tasks import get_task

    ref.mask, ref.task = np.ones((2, 4), dtype=bool), get_task("text-classification")
    figures = ref._figures({"logits": np.ones((2, 3))}, {"logits": np.array([[1.0, 1.5, 1.0], [np.nan, 1.0, 1.0]])})
    assert math.isnan(figures["max_abs_diff"]) and math.isnan(figures["cosine"])
    assert divergence("fp32", figures).startswith("diverged from PyTorch: worst-text cosine nan")


def test_int8_config_follows_the_cpu():
    assert onnxbuild.int8_isa(frozenset({"avx2", "avx512f", "avx512_vnni"})) == "avx512_vnni"
    assert onnxbuild.int8_isa(frozenset({"avx2", "avx512f", "avx512bw"})) == "avx512"
    assert onnxbuild.int8_isa(frozenset({"avx", "avx2"})) == "avx2"
    assert onnxbuild.int8_isa(frozenset({"asimd", "arm64"})) == "arm64"
    assert "no faster than fp32" in onnxbuild.isa_note("avx2", frozenset({"avx2"}))
    assert onnxbuild.isa_note("avx512_vnni", frozenset({"avx512_vnni"})) is None


def test_sharded_weights_load_hash_and_export(tiny_bert, tmp_path):
    """A model save_pretrained split into shards loads, counts, hashes and exports like a whole one."""
    import torch

    whole = load_model(tiny_bert)
    folder = tmp_path / "sharded"
    whole.torch_model().save_pretrained(folder, max_shard_size="40KB")
    whole.tokenizer().save_pretrained(folder)
    shards = sorted(folder.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and not (folder / "model.safetensors").exists()

    sharded = load_model(folder)
    assert sharded.weight_files == tuple(shards)
    assert sharded.num_parameters == whole.num_parameters
    assert sharded.weights_bytes == sum(p.stat().st_size for p in shards)
    variants = export_onnx(sharded, levels=["fp32"], quantize="none", output=tmp_path / "out")
    assert variants["fp32"].ok, variants["fp32"].error
    assert variants["torch"].size_bytes == sharded.weights_bytes

    shards[-1].write_bytes(shards[-1].read_bytes())  # same bytes: same hash
    assert load_model(folder).weights_sha256 == sharded.weights_sha256
    model = load_model(folder).torch_model()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(folder, max_shard_size="40KB")
    with pytest.raises(UsageProblem, match="changed after"):
        export_onnx(sharded, levels=["fp32"], quantize="none", output=tmp_path / "out")


def test_shards_missing_from_their_index_are_named(tiny_bert, tmp_path):
    import shutil

    folder = tmp_path / "broken"
    load_model(tiny_bert).torch_model().save_pretrained(folder, max_shard_size="40KB")
    shutil.copy(tiny_bert / "config.json", folder / "config.json")
    victim = sorted(folder.glob("model-*.safetensors"))[0]
    victim.unlink()
    with pytest.raises(ModelSourceError, match=victim.name):
        load_model(folder)


def test_a_failure_at_a_sufficient_opset_is_not_blamed_on_the_opset(tiny_bert, cache, monkeypatch):
    def broken(model, out, opset, device):
        raise RuntimeError("tracing failed on a custom layer")

    monkeypatch.setattr(onnxbuild, "export_fp32", broken)
    assert onnxbuild.default_opset(load_model(tiny_bert)) == 18  # optimum's BERT default
    variants = export_onnx(str(tiny_bert), levels=["fp32"], quantize="none", opset=18)
    assert variants["fp32"].error == "build failed: RuntimeError: tracing failed on a custom layer"
    with pytest.raises(HFMagicError, match="refused opset 11 for bert: tracing failed on a "
                                           "custom layer; use opset 18 \\(optimum's default for it\\) or higher"):
        export_onnx(str(tiny_bert), levels=["fp32"], quantize="none", opset=11)


def test_exports_still_work_once_optimum_intel_is_loaded(tiny_bert):
    """optimum-intel (what the openvino backend drives decoders with) registers model types only its
    OpenVINO exporter takes; optimum's own lookup then raises KeyError('onnx') (CI saw every later
    export fail). hfmagic reads the exporter's table itself."""
    pytest.importorskip("optimum.intel")
    from optimum.intel import OVModelForCausalLM  # noqa: F401  (the registration happens here)

    from hfmagic.models.handle import load_model
    from hfmagic.onnx.build import check_exportable

    check_exportable(load_model(tiny_bert), ["text-classification"])


def test_a_variant_of_several_graphs_is_sized_and_hashed_over_all_of_them(tmp_path):
    """An encoder-decoder's variant is several .onnx files (and external data): its size, node count
    and hash cover every one, while a one-file variant keeps its file's own hash."""
    import onnx
    from onnx import TensorProto, helper

    from hfmagic.core.hashing import file_sha256
    from hfmagic.onnx.build import graph_files, graph_stats, onnx_size, variant_sha256

    def graph(name, ops):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        nodes = [helper.make_node("Identity", ["x" if i == 0 else f"y{i - 1}"], [f"y{i}"]) for i in range(ops)]
        y = helper.make_tensor_value_info(f"y{ops - 1}", TensorProto.FLOAT, [1])
        onnx.save(helper.make_model(helper.make_graph(nodes, name, [x], [y])), tmp_path / f"{name}.onnx")
        return tmp_path / f"{name}.onnx"

    encoder = graph("encoder_model", 2)
    assert graph_files(encoder) == [encoder] and variant_sha256(encoder) == file_sha256(encoder)
    decoder = graph("decoder_model", 3)
    (tmp_path / "decoder_model.onnx_data").write_bytes(b"\0" * 1000)
    files = graph_files(encoder)
    assert [p.name for p in files] == ["decoder_model.onnx", "encoder_model.onnx", "decoder_model.onnx_data"]
    assert onnx_size(encoder) == encoder.stat().st_size + decoder.stat().st_size + 1000
    assert graph_stats(encoder) == (5, 0)
    before = variant_sha256(encoder)
    (tmp_path / "decoder_model.onnx_data").write_bytes(b"\1" * 1000)  # a change in any file changes the hash
    assert variant_sha256(encoder) != before
