"""Decoder LLMs (the text-generation task): tiny random decoders of four architectures exported with
their KV cache, onnxruntime-genai's variants, every backend's tokens, fp16."""


import numpy as np
import pytest


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
