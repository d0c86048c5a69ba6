"""llama.cpp as a backend, through a real InteractiveShell: a tiny GGUF (written with the gguf package as
llama.cpp's converter writes one) exported to llama.cpp's variants, benchmarked by the same rounds and
clock as torch, evaluated by the same perplexity; a Llama's own weights written as an F32 GGUF give
torch's logits; llama.cpp's threads leave the cores alone between runs."""

from __future__ import annotations

import time

import pytest
from tests.support.fast import SWEEP_NO_WIDGET as FAST


def test_a_gguf_runs_on_llama_cpp_as_variants_of_its_own(shell, capsys, tmp_path, cache):
    from tests.support.gguf import write_tiny_gguf

    shell.user_ns["tiny_gguf"] = str(write_tiny_gguf(tmp_path, "Q8_0"))
    shell.run_line_magic("load_model", "$tiny_gguf --name tg -q")
    variants = shell.run_line_magic("export_onnx", "tg --levels gguf --name tg_gguf -o -q")
    assert variants.names == ["torch", "gguf-f32", "gguf-q6_k", "gguf-q4_k_m", "gguf-q8_0"], variants.names
    assert all(v.ok for v in variants), [(v.name, v.error) for v in variants]
    assert {v.kind for v in variants.items[1:]} == {"gguf"}
    assert variants["gguf-f32"].validation["cosine"] > 0.99999  # the weights torch runs, as F32
    own = variants["gguf-q8_0"]
    assert "the GGUF file as loaded" in own.quantization and own.cli_command.startswith(f"cp {tmp_path}")
    # the tiny rows (64) fill no 256-wide k-quant block: llama.cpp falls back, and the variant says so
    assert "tensors: 15 Q8_0, 5 F32" in variants["gguf-q6_k"].quantization
    assert variants["gguf-q4_k_m"].cli_command == "llama-quantize gguf-f32/model.gguf gguf-q4_k_m/model.gguf Q4_K_M"

    bench = shell.run_line_magic("benchmark", f"tg_gguf --variants torch,gguf-f32,gguf-q8_0 --batch-sizes 1,2 "
                                              f"--seq-lens 16 --new-tokens 4 {FAST} -o -q")
    rows = {(r["variant"], r["batch_size"]): r for r in bench.rows}
    for name in ("gguf-f32", "gguf-q8_0"):
        one = rows[(name, 1)]
        assert one["status"] == "ok" and one["backend"] == "llama.cpp" and one["new_tokens"] == 4
        assert one["tpot_p50_ms"] > 0 and one["ttft_p50_ms"] > one["tpot_p50_ms"] / 10
        assert one["pp_tokens_per_s"] > 0 and one["tg_tokens_per_s"] == pytest.approx(
            sum(1000 / t for t in one["samples_ms"]) / len(one["samples_ms"]))
        assert rows[(name, 2)]["status"] == "unsupported: llama.cpp runs batch 1 at most here; use --batch-sizes 1"
    assert rows[("torch", 2)]["status"] == "ok"
    assert any("llama.cpp n_threads and n_threads_batch" in n for n in bench.notes), bench.notes

    ev = shell.run_line_magic("evaluate", "tg_gguf --data bbc --limit 20 --max-tokens 512 --no-widget -o -q")
    scored = {r["variant"]: r for r in ev.rows}
    assert set(scored) == set(variants.names) and all(r["status"] == "ok" for r in scored.values())
    # F32 is torch's computation in another runtime: the same perplexity, the same greedy tokens
    assert scored["gguf-f32"]["perplexity"] == pytest.approx(scored["torch"]["perplexity"], rel=1e-4)
    assert scored["gguf-f32"]["agreement"] == 1.0
    # the file's own 8-bit weights are torch's: only llama.cpp's 8-bit activations differ
    assert 0.99 < scored["gguf-q8_0"]["perplexity_ratio"] < 1.01

    for line, words in (("tg --levels gguf --quantize static", "static int8 is not built for tg (text-generation)"),
                        ("tg --levels ggml", "unknown level 'ggml'")):
        failed = shell.run_cell(f"%export_onnx {line}", store_history=False)
        assert words in str(failed.error_in_exec), failed.error_in_exec
    failed = shell.run_cell("%benchmark tg --variants gguf-q5_k", store_history=False)
    assert "unknown variant 'gguf-q5_k'" in str(failed.error_in_exec) and "gguf-q8_0" in str(failed.error_in_exec)
    said = capsys.readouterr()
    assert "Traceback" not in said.out + said.err


def test_a_llamas_own_weights_as_f32_gguf_give_torchs_logits_and_tokens(llama, tmp_path):
    """A Llama saved by transformers (a WordPiece tokenizer: the file gets no vocabulary, hfmagic gives
    llama.cpp ids) written as an F32 GGUF: every position's logits and the greedy tokens are torch's."""
    import numpy as np
    import torch

    from hfmagic.models.handle import load_model
    from hfmagic.tasks.generation.decoding import generation_config, greedy
    from hfmagic.tasks.generation.gguf import write_f32
    from hfmagic.tasks.generation.llamacpp import LlamaCppGenerator

    model = load_model(llama, name="llama")
    said = write_f32(model, tmp_path / "model.gguf")
    assert "no vocabulary" in said
    generator = LlamaCppGenerator(tmp_path / "model.gguf", threads=1, context=512)
    try:
        ids = torch.tensor([[5, 9, 14, 3, 27, 8, 11, 40, 2, 19]])
        with torch.inference_mode():
            want = model.torch_model()(ids).logits
        got = generator(ids).logits
        assert got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=2e-4, rtol=1e-3)
        config = generation_config(model, 12)
        assert greedy(generator, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, config).tolist() == \
            greedy(model.torch_model(), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, config).tolist()
    finally:
        generator.close()


def test_qwen2_gets_no_llama_cpp_variants_by_default_and_one_line_when_asked(tiny_factory):
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model

    qwen = load_model(tiny_factory("qwen2", "text-generation"), name="qwen")
    assert "gguf" not in qwen.task_plugin.export.default_levels(qwen)
    asked = export_onnx(qwen, levels=["gguf"], quantize="int8-wo", progress=False)
    f32, q8 = asked["gguf-f32"], asked["gguf-q8_0"]
    assert "written here for Llama-architecture models (llama, mistral), not qwen2" in f32.error
    assert q8.error.startswith("not built: gguf-f32, which it starts from, failed")


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def test_llama_cpp_threads_leave_the_cores_alone_between_runs(tmp_path, cache):
    """An interleaved worker on llama.cpp at 2 threads: while it waits for its next slice, it takes no CPU
    (built without OpenMP, ggml's threads live for one graph's compute; none spins after it)."""
    from hfmagic.benchmarking.plan import Job
    from hfmagic.benchmarking.sweep import Sweep
    from hfmagic.export.api import export_onnx
    from hfmagic.measure.worker import WorkerProcess
    from hfmagic.models.handle import load_model
    from tests.support.gguf import write_tiny_gguf

    variants = export_onnx(load_model(write_tiny_gguf(tmp_path, "F32"), name="tg"), levels=["gguf"], quantize="none",
                           progress=False)
    sweep = Sweep([variants.model], [], None, {"threads": 2, "warmup": 1, "min_runs": 3, "min_time": 0.05,
                                               "new_tokens": 16}, None, None, False, 60, None, {})
    job = Job(variants["gguf-f32"], "llama.cpp", [(1, 64)])
    worker = WorkerProcess({**sweep.job_spec(job, job.shapes), "serve": True})
    try:
        assert worker.next(300)["type"] == "ready"
        worker.send({"cmd": "slice", "shape": [1, 64], "runs": 5, "round": 1})
        assert "samples_ms" in worker.next(60)
        busy = cpu_seconds(worker.proc.pid)
        time.sleep(1.0)
        idle = cpu_seconds(worker.proc.pid) - busy
        assert idle < 0.05, f"llama.cpp's worker took {idle:.2f} s of CPU in 1 s between slices"
    finally:
        worker.close()


def test_calibration_texts_give_llama_cpp_k_quants_an_importance_matrix(tmp_path, cache):
    """--calibration beside --levels gguf: the k-quants weighed by llama-imatrix's importance matrix,
    computed by PyTorch (each input column's mean square activation) from the texts; keyed by them."""
    import numpy as np

    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model
    from hfmagic.tasks.generation.llamacpp import IMATRIX_WINDOW, importance_matrix
    from tests.support.gguf import write_tiny_gguf
    from tests.support.tiny import sentences

    model = load_model(write_tiny_gguf(tmp_path, "F32"), name="tg")
    texts = sentences(200, seed=3)
    built = export_onnx(model, levels=["gguf"], quantize="int4", calibration=texts, progress=False)
    assert built.names == ["torch", "gguf-f32", "gguf-q4_k_m", "gguf-q4_k_m-imatrix"], built.names
    calibrated = built["gguf-q4_k_m-imatrix"]
    assert calibrated.ok and "importance matrix" in calibrated.quantization, calibrated.quantization
    assert calibrated.cli_command.startswith("llama-quantize --imatrix IMATRIX gguf-f32/model.gguf")
    assert "tokens of" in calibrated.cli_command
    assert calibrated.sha256 != built["gguf-q4_k_m"].sha256  # the weights moved where the texts put weight
    matrix, _ = importance_matrix(model, model.task_plugin.export.calibration(model, texts, 100, None))
    assert set(matrix) >= {"blk.0.attn_q.weight", "blk.1.ffn_down.weight", "token_embd.weight"}
    assert matrix["blk.0.ffn_down.weight"].shape == (model.config["intermediate_size"],)
    assert all(np.isfinite(v).all() and (v >= 0).all() for v in matrix.values())
    again = export_onnx(model, levels=["gguf"], quantize="int4", calibration=texts[:150], progress=False)
    assert again["gguf-q4_k_m-imatrix"].path != calibrated.path  # other texts, another entry
    assert IMATRIX_WINDOW == 512


def test_backends_and_variants_that_do_not_meet_say_which_to_add(llama, shell, capsys):
    shell.user_ns["tiny_llama"] = str(llama)
    shell.run_line_magic("load_model", "$tiny_llama --name tl -q")
    for line, words in (("tl --variants torch --backends torch,llama.cpp",
                         "backend llama.cpp runs llama.cpp's GGUF variants, and none was chosen; add gguf-f32"),
                        ("tl --variants fp32,gguf-q8_0 --backends onnxruntime",
                         "no backend in --backends runs variant 'gguf-q8_0' (gguf); add llama.cpp to --backends")):
        failed = shell.run_cell(f"%benchmark {line}", store_history=False)
        assert words in str(failed.error_in_exec), failed.error_in_exec
    assert "Traceback" not in capsys.readouterr().out
