"""Decoder LLMs (the text-generation task): tiny random decoders of four architectures exported with
their KV cache, onnxruntime-genai's variants, every backend's tokens, fp16."""


import numpy as np
import pytest


def test_onnxruntime_genai_builds_its_own_variants_that_match_pytorch(llama_variants):
    assert llama_variants.names == ["torch", "fp32", "int8-wo", "int4", "genai-fp32", "genai-int8-wo", "genai-int4",
                                    "gguf-f32", "gguf-q8_0", "gguf-q6_k", "gguf-q4_k_m"]
    for name in ("genai-fp32", "genai-int8-wo", "genai-int4"):
        v = llama_variants[name]
        assert v.ok and v.kind == "genai" and (v.folder / "genai_config.json").exists(), (name, v.error)
        assert v.validation["argmax_agreement"] == 1.0 and v.size_bytes > 1000
    assert llama_variants["genai-fp32"].validation["cosine"] > 0.9999
    assert "onnxruntime_genai.models.builder" in llama_variants["genai-int4"].cli_command
    eight = llama_variants["genai-int8-wo"]  # the builder's fp32 graph, its MatMuls then 8-bit
    assert "bits=8" in eight.cli_command and eight.quantization.endswith("over onnxruntime-genai's fp32 graph")
    assert eight.validation["cosine"] > 0.999


@pytest.mark.parametrize("arch", ["llama", "qwen2", "phi3", "gpt2"])
def test_tiny_decoders_load_and_export_with_their_kv_cache(tiny_factory, arch):
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model

    model = load_model(tiny_factory(arch, "text-generation"))
    assert model.task == "text-generation"
    card = str(model.card())
    assert "KV heads" in card and "context" in card and "vocabulary" in card
    variants = export_onnx(model, levels=["fp32"], progress=False)  # onnxruntime-genai's: below, on llama
    assert variants.names == ["torch", "fp32", "int8-wo", "int4"]  # weight-only: dynamic int8 on request
    import onnxruntime as ort

    inputs = {i.name for i in ort.InferenceSession(str(variants["fp32"].path)).get_inputs()}
    assert any(".key" in n for n in inputs), inputs  # the KV cache goes in and comes out
    if arch == "gpt2":  # its layers export as Gemm, which MatMulNBits does not take: each says it is not quantized
        for name in ("int8-wo", "int4"):  # (its tied output projection alone is)
            assert variants[name].error.startswith("not quantized: only 1 of 9 weight matrices were (8 of those left "
                                                   "are Gemm"), variants[name].error
    for v in variants.items[1:2 if arch == "gpt2" else 4]:
        assert v.ok, (v.name, v.error)
        assert v.validation["greedy_tokens"] == 16 and v.validation["cosine"] > 0.99
    for name, bits in (("int8-wo", 8), ("int4", 4)):
        if variants[name].ok:
            nodes = [n for n in __import__("onnx").load(str(variants[name].path)).graph.node if n.op_type == "MatMulNBits"]
            got = {n.name: next(a.i for a in n.attribute if a.name == "bits") for n in nodes}
            head = [n for n in got if "lm_head" in n]  # the output projection at 8 bits whatever the rest
            assert head and got.pop(head[0]) == 8 and set(got.values()) == {bits}, (name, got)
    if arch != "gpt2":  # 8-bit weights keep the logits closer than 4-bit ones
        assert variants["int8-wo"].validation["cosine"] > max(0.999, variants["int4"].validation["cosine"])
        assert variants["int8-wo"].quantization.startswith("int8 weight-only MatMulNBits, block 32")


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
                                  (llama_variants["int8-wo"], "openvino"),
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


def test_dynamic_int8_beside_the_weight_only_variants_is_built_on_request(llama):
    """A decoder's auto no longer builds dynamic int8 (it quantizes activations too); named beside
    the weight-only variants, it is a second export call, merged into one set."""
    from hfmagic.export.api import export_all, requests_for
    from hfmagic.models.handle import load_model

    requests = requests_for(["torch", "int8", "int8-wo", "int4"])
    assert [r["quantize"] for r in requests] == ["dynamic", "auto"]
    variants = export_all(load_model(llama, name="llama"), requests, progress=False)
    assert variants.names == ["torch", "fp32", "int8", "int8-wo", "int4"]
    assert variants["int8"].quantization.startswith("dynamic") and variants["int8-wo"].ok
    assert requests_for(["int8-wo"]) == [{"levels": ["fp32"], "quantize": "int8-wo", "calibration": None}]


def test_a_folder_dequantised_from_a_gguf_says_what_its_reference_is(llama, tmp_path):
    """A GGUF's folder holds its weights dequantised to float32, which torch runs: the card, the
    evaluation's notes and the sweep's notes say that the reference is those, not the file's own."""
    import shutil

    from hfmagic.benchmarking.api import benchmark
    from hfmagic.evaluation.api import evaluate
    from hfmagic.models.handle import load_model
    from hfmagic.tasks.generation.gguf import MARKER

    folder = shutil.copytree(llama, tmp_path / "from-gguf")
    (folder / MARKER).write_text("dequantised by transformers from /models/tiny.Q4_1.gguf\n")
    said = "torch runs tiny.Q4_1.gguf's weights dequantised to float32 by transformers, the default reference"
    model = load_model(folder, name="tinygguf")
    assert said in str(model.card()) and said in model.reference_note
    ev = evaluate(model, variants=["torch"], max_tokens=256, progress=False)
    bench = benchmark(model, variants=["torch"], batch_sizes=[1], prompt_lens=[8], new_tokens=4, min_time=0.05,
                      max_time=1, progress=False)
    assert any(said in n for n in ev.notes) and any(said in n for n in bench.notes)
    assert load_model(llama, name="plain").reference_note is None


@pytest.mark.parametrize("quant", ["F32", "Q8_0"])
def test_a_tiny_gguf_loads_as_its_weights_dequantised(tmp_path, cache, quant):
    """A GGUF written as llama.cpp's converter writes one (tests/support/gguf.py) loads through
    transformers' dequantisation: F32 gives back the very logits of the model it was written from,
    Q8_0 logits within its 8-bit error; the card says what the reference is, and the tokenizer is the
    file's byte-level BPE."""
    import torch
    from transformers import AutoModelForCausalLM

    from hfmagic.models.handle import load_model
    from tests.support.gguf import write_tiny_gguf

    path = write_tiny_gguf(tmp_path, quant)
    model = load_model(path, name="tinygguf")
    assert model.task == "text-generation" and model.architecture == "LlamaForCausalLM"
    assert f"torch runs {path.name}'s weights dequantised to float32" in str(model.card())
    ids = model.tokenizer()("the other thing", return_tensors="pt")["input_ids"]
    assert ids.shape[1] > 3 and ids[0, 0] != 0  # byte-level pieces, no beginning-of-text token added
    source = AutoModelForCausalLM.from_pretrained(tmp_path / "source").eval()
    with torch.inference_mode():
        want, got = source(ids).logits, model.torch_model()(ids).logits
    if quant == "F32":
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    else:
        cosine = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
        assert 0.999 < cosine < 1.0 and not torch.allclose(got, want, atol=1e-6)


def test_bad_weight_only_requests_are_one_line(llama, tiny_bert):
    import re

    from hfmagic.core.errors import HFMagicError
    from hfmagic.export.api import export_onnx
    from hfmagic.models.handle import load_model

    decoder = load_model(llama, name="llama")
    cases = [(lambda: export_onnx(load_model(tiny_bert), quantize="int8-wo"), "built for text-generation models"),
             (lambda: export_onnx(decoder, quantize="int8-wo", calibration=["a text"]),
              "static int8 is not built for llama (text-generation), and --calibration calibrates llama.cpp's k-quants"),
             (lambda: export_onnx(decoder, quantize="int8-wo", block_size=24), "the weight-only block of int4 and int8-wo"),
             (lambda: export_onnx(decoder, quantize="static"), "use --quantize int8-wo, int4, auto or dynamic")]
    for call, words in cases:
        with pytest.raises(HFMagicError, match=re.escape(words)) as caught:
            call()
        assert "\n" not in str(caught.value)
