"""Decoder LLMs (the text-generation task) end to end, through a real InteractiveShell and the CLI:
tiny random decoders of four architectures built from configs, and the real SmolLM2 GGUF."""

import subprocess
import sys

import numpy as np
import pytest
from tests.support.fast import DECODER_TIMING as FAST


def test_onnxruntime_genai_builds_its_own_variants_that_match_pytorch(llama_variants):
    assert llama_variants.names == ["torch", "fp32", "int8", "int4", "genai-fp32", "genai-int4"]
    for name in ("genai-fp32", "genai-int4"):
        v = llama_variants[name]
        assert v.ok and v.kind == "genai" and (v.folder / "genai_config.json").exists(), (name, v.error)
        assert v.validation["argmax_agreement"] == 1.0 and v.size_bytes > 1000
    assert llama_variants["genai-fp32"].validation["cosine"] > 0.9999
    assert "onnxruntime_genai.models.builder" in llama_variants["genai-int4"].cli_command


@pytest.mark.parametrize("arch", ["llama", "qwen2", "phi3", "gpt2"])
def test_tiny_decoders_load_and_export_with_their_kv_cache(tiny_factory, arch):
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model

    model = load_model(tiny_factory(arch, "text-generation"))
    assert model.task == "text-generation"
    card = str(model.card())
    assert "KV heads" in card and "context" in card and "vocabulary" in card
    variants = export_onnx(model, levels=["fp32"], progress=False)  # onnxruntime-genai's: below, on llama
    assert variants.names == ["torch", "fp32", "int8", "int4"]
    import onnxruntime as ort

    inputs = {i.name for i in ort.InferenceSession(str(variants["fp32"].path)).get_inputs()}
    assert any(".key" in n for n in inputs), inputs  # the KV cache goes in and comes out
    if arch == "gpt2":  # its layers export as Gemm, which MatMulNBits does not take: int4 says it is not int4
        assert variants["int4"].error.startswith("not quantized: only 0 of 8 weight matrices were (8 of those left "
                                                 "are Gemm"), variants["int4"].error
    for v in variants.items[1:3 if arch == "gpt2" else 4]:
        assert v.ok, (v.name, v.error)
        assert v.validation["greedy_tokens"] == 16 and v.validation["cosine"] > 0.99
    if variants["int4"].ok:
        int4_ops = {n.op_type for n in __import__("onnx").load(str(variants["int4"].path)).graph.node}
        assert "MatMulNBits" in int4_ops


def test_benchmark_measures_prefill_and_decode_and_they_add_up(shell, llama_variants):
    shell.user_ns["llama_onnx"] = llama_variants
    result = shell.run_line_magic("benchmark", f"llama_onnx --variants torch,int4,genai-fp32 --prompt-lens 16 "
                                               f"--new-tokens 8 --batch-sizes 1,2 --no-widget -o {FAST}")
    rows = result.rows  # one variant per backend: torch's loop, optimum's over onnxruntime, onnxruntime-genai's
    assert {(r["variant"], r["backend"]) for r in rows} == {
        ("torch", "torch"), ("int4", "onnxruntime"), ("genai-fp32", "onnxruntime-genai")} and len(rows) == 6
    for row in rows:
        assert row["status"] == "ok" and row["new_tokens"] == 8 and row["seq_len"] == 16
        assert row["tpot_p50_ms"] == row["p50_ms"] and row["ttft_p50_ms"] > 0
        assert len(row["itl_samples_ms"]) == 7 * row["runs"]  # every gap after the first token, every run
        # TTFT + TPOT x (new tokens - 1) is the generation's own end-to-end time, run by run, less what
        # generate() does after the last token (returning the sequences: a fixed fraction of a ms)
        rebuilt, gen = np.array(row["ttft_samples_ms"]) + np.array(row["samples_ms"]) * 7, np.array(row["gen_samples_ms"])
        assert np.all(rebuilt <= gen) and np.median(gen - rebuilt) < 0.05 * np.median(gen) + 0.5, (rebuilt, gen)
        assert row["decode_tokens_per_s"] == pytest.approx(row["batch_size"] * 1000 / row["tpot_p50_ms"])
    table = str(result)
    assert "TTFT p50 ms" in table and "TPOT speed-up" in table and "prompt" in table


def test_every_backend_generates_exactly_the_tokens_asked_for(llama_variants):
    """The same greedy loop everywhere: no early stop, so every run makes new_tokens tokens; and the
    fp32 ONNX file under onnxruntime and OpenVINO (optimum-intel's OVModelForCausalLM reading it as
    it is) generates torch's tokens."""
    from hfmagic.backends import get_backend
    from hfmagic.tasks.generation.decoding import generation_config, greedy, time_generations

    ids = np.array([[5, 17, 33, 9]], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    tokens = {}
    for variant, backend_name in ((llama_variants["torch"], "torch"), (llama_variants["int4"], "onnxruntime"),
                                  (llama_variants["fp32"], "onnxruntime"), (llama_variants["fp32"], "openvino"),
                                  (llama_variants["int8"], "openvino"),
                                  (llama_variants["genai-fp32"], "onnxruntime-genai")):
        backend = get_backend(backend_name)()
        backend.load(variant, 1)
        out = time_generations(backend, variant.model, feed, 12, 2, 0.0)
        assert len(out["samples_ms"]) == 2 and len(out["itl_samples_ms"]) == 2 * 11, (variant.name, backend_name)
        config = generation_config(variant.model, 12)
        tokens[variant.name, backend_name] = greedy(backend.generator(), dict(feed), config).tolist()
        backend.close()
    reference = tokens["torch", "torch"]
    for key in [("fp32", "onnxruntime"), ("fp32", "openvino"), ("genai-fp32", "onnxruntime-genai")]:
        assert tokens[key] == reference, (key, tokens[key], reference)


@pytest.mark.slow
def test_torch_compile_compiles_the_decoders_forward_and_generates_torchs_tokens(llama_variants):
    """torch-compile on a decoder compiles its forward (generate() calls it) over a static KV cache:
    the compiled model makes eager torch's tokens, and compiling lands in the first generations,
    which take far longer than the later ones (the ones measured, after the warm-up)."""
    import time

    from hfmagic.backends import get_backend
    from hfmagic.tasks.generation.decoding import generation_config, greedy

    ids = np.array([[5, 17, 33, 9, 21, 8]], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    tokens, seconds = {}, []
    for name in ("torch", "torch-compile"):
        backend = get_backend(name)()
        backend.load(llama_variants["torch"], 1)
        config = backend.generation_settings(generation_config(llama_variants.model, 6))
        for _ in range(4 if name == "torch-compile" else 1):
            start = time.perf_counter()
            tokens[name] = greedy(backend.generator(), dict(feed), config).tolist()
            seconds.append(time.perf_counter() - start)
        backend.close()
    assert config.cache_implementation == "static"
    assert hasattr(backend.model.forward, "_torchdynamo_orig_callable") or "compile" in repr(backend.model.forward)
    eager = llama_variants.model.torch_model()  # the handle's model is not the compiled one: still eager
    assert "forward" not in vars(eager) and backend.model is not eager
    assert tokens["torch-compile"] == tokens["torch"]
    compiled = seconds[1:]
    assert compiled[0] > 10 * compiled[-1], seconds  # the first run compiled; the last ran compiled code


def test_evaluate_gives_perplexity_with_a_gate_and_greedy_agreement(shell, llama_variants):
    shell.user_ns["llama_onnx"] = llama_variants
    result = shell.run_line_magic("evaluate", "llama_onnx --max-tokens 512 --no-widget -o")
    assert any(n.startswith("perplexity over 512 tokens") for n in result.notes), result.notes
    rows = {r["variant"]: r for r in result.rows}
    torch_ppl = rows["torch"]["perplexity"]
    assert 1 < torch_ppl < 1000 and rows["torch"]["perplexity_low"] < torch_ppl < rows["torch"]["perplexity_high"]
    assert rows["fp32"]["perplexity"] == pytest.approx(torch_ppl, rel=1e-4)  # the same function
    assert rows["genai-fp32"]["perplexity"] == pytest.approx(torch_ppl, rel=1e-4)  # onnxruntime-genai's too
    for name in ("fp32", "int8", "int4", "genai-fp32", "genai-int4"):
        assert rows[name]["gate"] == ("pass" if rows[name]["pct_of_reference"] <= 101 else "fail")
        assert 0 <= rows[name]["agreement"] <= 1 and 0 <= rows[name]["first_divergence"] <= 16
    assert rows["fp32"]["agreement"] == 1.0 and rows["fp32"]["token_agreement"] == 1.0
    assert "gate (101%)" in str(result) and "bbc" in result.data_source
    assert list(result.flips.columns) == ["variant", "row", "prompt", "reference", "prediction", "first_divergence"]
    from hfmagic.ui.widget import Dashboard

    dash = Dashboard(result)  # perplexity: the dashboard's Pareto front takes the lowest
    assert dash.metric_lower and any(c["title"] == "perplexity" for c in dash.columns)


def test_bad_generation_input_is_one_line(shell, llama_variants, tiny_bert, tmp_path, capsys):
    shell.user_ns["llama_onnx"] = llama_variants
    cases = {
        "llama_onnx --new-tokens 0": "--new-tokens must be 2 or more",
        "llama_onnx --prompt-lens 500 --new-tokens 64": "context of 512 tokens; use --prompt-lens up to 448",
        f"{tiny_bert} --new-tokens 8": "--new-tokens is for text-generation models",
    }
    from IPython.core.error import UsageError

    for line, expected in cases.items():
        res = shell.run_cell(f"%benchmark {line} --no-widget {FAST}", store_history=False)
        said = capsys.readouterr()
        assert isinstance(res.error_in_exec, UsageError) and "Traceback" not in said.out + said.err, said
        message = str(res.error_in_exec)
        assert "\n" not in message and expected in message, (line, message)
    junk = tmp_path / "broken.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    cli = subprocess.run([sys.executable, "-m", "hfmagic", "load", str(junk)], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode != 0 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert "cannot dequantise broken.gguf" in cli.stderr


def test_int4_is_rtn_by_default_and_hqq_on_request(shell, llama, llama_variants):
    """RTN's int4 is symmetric (no zero points) with int8 compute (accuracy level 4); --int4-method
    hqq carries zero points (asymmetric, fitted per block); each is cached apart and says which."""
    import onnx

    def nbits(variant):
        return [n for n in onnx.load(str(variant.path)).graph.node if n.op_type == "MatMulNBits"]

    rtn = llama_variants["int4"]
    assert "RTN, symmetric" in rtn.quantization and "accuracy_level=4" in rtn.cli_command
    assert all(len(n.input) < 4 and {a.name: a.i for a in n.attribute}["accuracy_level"] == 4 for n in nbits(rtn))
    shell.user_ns["llama_dir"] = str(llama)
    shell.run_line_magic("load_model", "$llama_dir --name llama_hqq -q")
    hqq = shell.run_line_magic("export_onnx", "llama_hqq --quantize int4 --int4-method hqq -o -q")["int4"]
    assert hqq.ok and "HQQ" in hqq.quantization and all(len(n.input) >= 4 and n.input[3] for n in nbits(hqq))
    assert hqq.path != rtn.path and "HQQWeightOnlyQuantConfig(block_size=32)" in hqq.cli_command
    with pytest.raises(Exception, match="int4-method"):
        shell.run_line_magic("export_onnx", "llama_hqq --quantize int4 --int4-method gptq")


def test_chat_template_formats_the_greedy_prompts_and_is_refused_without_one(shell, llama, llama_variants, tiny_bert,
                                                                             tmp_path):
    import json
    import shutil

    from IPython.core.error import UsageError

    shell.user_ns["llama_onnx"] = llama_variants
    with pytest.raises(UsageError, match="tokenizer has no chat template"):
        shell.run_line_magic("evaluate", "llama_onnx --variants torch --chat-template --no-widget")
    chat = tmp_path / "chat-llama"
    shutil.copytree(llama, chat)
    config = json.loads((chat / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}user: {{ m['content'] }} {% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    (chat / "tokenizer_config.json").write_text(json.dumps(config))
    shell.user_ns["chat_dir"] = str(chat)
    shell.run_line_magic("load_model", "$chat_dir --name chat_llama -q")
    plain = shell.run_line_magic("evaluate", "chat_llama --variants torch --no-widget -o -q")
    chatted = shell.run_line_magic("evaluate", "chat_llama --variants torch --chat-template --no-widget -o -q")
    assert any("chat template" in n for n in chatted.notes) and not any("chat template" in n for n in plain.notes)
    assert chatted.rows[0]["perplexity"] == plain.rows[0]["perplexity"]  # the text scored is the same
    assert chatted.fingerprint != plain.fingerprint  # the prompts are not
    shell.user_ns["tiny_enc_dir"] = str(tiny_bert)
    with pytest.raises(UsageError, match="--chat-template formats the prompts of text-generation models"):
        shell.run_line_magic("evaluate", "$tiny_enc_dir --data demo --chat-template --no-widget")


def test_fp16_is_built_for_gpus_validated_and_runs_here_too(llama, llama_variants):
    """--levels fp16: the fp32 export in float16 (its KV cache still fed as float32), validated like the
    others, smaller, with a note that it is meant for GPUs; onnxruntime's CPU provider runs it."""
    from hfmagic.backends import get_backend
    from hfmagic.tasks.generation.decoding import generation_config, greedy
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model

    variants = export_onnx(load_model(llama, name="llama16"), levels=["fp16"], quantize="none", progress=False)
    assert variants.names == ["torch", "fp16"]
    fp16 = variants["fp16"]
    assert fp16.ok and fp16.validation["cosine"] > 0.99 and "float16" in fp16.quantization, fp16.error
    assert fp16.size_bytes < 0.8 * llama_variants["fp32"].size_bytes  # half the weights; a tiny graph's nodes stay
    assert any("fp16 is fp16 meant for GPUs" in n for n in variants.notes)
    backend = get_backend("onnxruntime")()
    backend.load(fp16, 1)
    ids = np.array([[5, 17, 33, 9]], dtype=np.int64)
    tokens = greedy(backend.generator(), {"input_ids": ids, "attention_mask": np.ones_like(ids)},
                    generation_config(fp16.model, 6))
    assert tokens.shape[-1] == 6
    backend.close()
