"""The decode loop of the ``text-generation`` task (:mod:`hfmagic.tasks.generation.task`): the
timed greedy generation, the validation of a variant against PyTorch, and the outputs %evaluate
scores. Its graph builds are :mod:`~hfmagic.tasks.generation.quantize` and
:mod:`~hfmagic.tasks.generation.genai`; perplexity is :mod:`~hfmagic.tasks.generation.evaluate`.

**Variants.** ``fp32``: optimum's ``text-generation-with-past`` export (KV cache in and out).
``int8``: dynamic, the MatMul weights only, per-channel (ORTQuantizer; the embeddings' Gather
stays fp32). ``int4``: weight-only, onnxruntime's ``MatMulNBitsQuantizer`` (block 32 by default,
symmetric; ``--block-size``), the MatMuls only. Each is validated against PyTorch on real prompts:
the worst prompt's cosine of the last position's logits (centred: softmax ignores a common
shift), and greedy agreement over
:data:`VALIDATE_TOKENS` new tokens (the share of prompts that match throughout, and the mean
position of the first different token).

**One measurement** is a greedy generation through ``transformers``' ``generate`` (torch, and
onnxruntime through optimum's ``ORTModelForCausalLM``, which feeds the KV cache back each step):
the same loop and the same :class:`~transformers.GenerationConfig` for every backend (greedy,
``min_new_tokens`` = ``max_new_tokens``, so there is no early stop). A stopping criterion that
never stops records the clock after each new token: TTFT is the first token's time (prefill
included), TPOT the mean gap after it, inter-token latencies every gap.
"""

from __future__ import annotations

import contextlib
import logging
import time

from hfmagic.core.timing import token_clock
from hfmagic.onnx.validation import cosine_similarity
from hfmagic.tasks.generation.genai import GenAIGenerator
from hfmagic.tasks.generation.llamacpp import LlamaCppGenerator

VALIDATE_TOKENS = 16   # greedy tokens compared with PyTorch when a variant is validated
VALIDATE_PROMPTS = 4
# last-position logits (centred), worst prompt: below these an export is broken, not approximate
# (SmolLM2's int8 0.88 and int4 0.94 kept their greedy tokens for a while and a perplexity within
# 20%; an int8 that quantized the attention's activations gave 0.005). Quality is %evaluate's.
COSINE_FLOOR = {"fp32": 0.999, "fp16": 0.99, "int8-wo": 0.99, "genai-int8-wo": 0.99, "int8": 0.8, "int4": 0.8,
                "gguf-f32": 0.999, "gguf-q8_0": 0.99, "gguf-q6_k": 0.99}


def ort_generator(folder, file_name: str, options, providers: list[str]):
    """optimum's ORTModelForCausalLM on ``folder/file_name`` with these session options."""
    from optimum.onnxruntime import ORTModelForCausalLM

    return ORTModelForCausalLM.from_pretrained(folder, file_name=file_name, session_options=options,
                                               provider=providers[0], use_cache=True, use_io_binding=False,
                                               local_files_only=True)


def generation_config(model, new_tokens: int):
    """The one decoding setting every backend gets: greedy, exactly ``new_tokens`` new tokens."""
    from transformers import GenerationConfig

    tokenizer = model.tokenizer()
    eos = model.config.get("eos_token_id", tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
    return GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                            eos_token_id=eos, pad_token_id=pad, use_cache=True)


def greedy(generator, feed: dict, config, stamps: list | None = None, each=None):
    """``generate`` with ``config`` on ``feed`` (numpy or torch); the new tokens, and the clock
    after each one in ``stamps`` when given; ``each(sequences)`` called after each token (a
    served stream: transformers' loop hands the token ids so far, onnxruntime-genai's and
    llama.cpp's an object whose ``tokens`` are the newest)."""
    import torch

    inputs = {k: torch.as_tensor(v) for k, v in feed.items()}
    criteria = token_clock(stamps, each)
    with torch.inference_mode(), transformers_quiet():
        out = generator.generate(**inputs, generation_config=config, stopping_criteria=criteria)
    return out[:, inputs["input_ids"].shape[1]:]


@contextlib.contextmanager
def transformers_quiet():
    """transformers' own notices (generate()'s about the defaults it fills in) kept out of the
    cell while hfmagic calls it, with a setting of its own given; its level is restored after."""
    logger = logging.getLogger("transformers")
    level = logger.level
    if level >= logging.ERROR:  # quiet already (a timed loop's): setLevel would clear every logger's cache
        yield
        return
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# -- measuring -----------------------------------------------------------------------------------
def time_generations(backend, model, prepared, new_tokens: int, runs: int, min_time: float) -> dict:
    """At least ``runs`` generations and ``min_time`` s; per run TPOT (the samples), TTFT, every
    inter-token gap, and the whole generation's time (``wall_ms``)."""
    import logging

    config = backend.generation_settings(generation_config(model, new_tokens))
    generator = backend.generator()
    ttft, tpot, gaps, wall = [], [], [], []
    logging.getLogger("transformers").setLevel(logging.ERROR)  # generate()'s notices, once per call
    start = time.perf_counter_ns()
    while True:
        stamps: list[int] = []
        t0 = time.perf_counter_ns()
        greedy(generator, prepared, config, stamps)
        t1 = time.perf_counter_ns()
        if len(stamps) != new_tokens:
            raise RuntimeError(f"generate made {len(stamps)} tokens, not the {new_tokens} asked for")
        ttft.append((stamps[0] - t0) / 1e6)
        steps = [(b - a) / 1e6 for a, b in zip(stamps, stamps[1:])]
        gaps += steps
        tpot.append(sum(steps) / len(steps))
        wall.append((t1 - t0) / 1e6)
        if len(wall) >= runs and t1 - start >= min_time * 1e9:
            return {"samples_ms": tpot, "ttft_samples_ms": ttft, "itl_samples_ms": gaps, "gen_samples_ms": wall,
                    "wall_ms": wall}


def figures(raw: dict, batch: int, seq: int) -> dict:
    """A generation row's figures from its samples (the p50_ms etc. columns are TPOT's)."""
    import numpy as np

    def pct(key, q):
        values = raw.get(key)
        return float(np.percentile(values, q)) if values else None

    def mean_rate(key, tokens):  # llama-bench's t/s: each run's tokens over its time, averaged over runs
        values = raw.get(key)
        return float(np.mean([tokens * 1000 / v for v in values])) if values else None

    tpot50, ttft50 = pct("samples_ms", 50), pct("ttft_samples_ms", 50)
    return {"new_tokens": raw.get("new_tokens"), "ttft_p50_ms": ttft50, "ttft_p90_ms": pct("ttft_samples_ms", 90),
            "tpot_p50_ms": tpot50, "tpot_p90_ms": pct("samples_ms", 90), "itl_p50_ms": pct("itl_samples_ms", 50),
            "itl_p99_ms": pct("itl_samples_ms", 99),
            "decode_tokens_per_s": batch * 1000 / tpot50 if tpot50 else None,
            "prefill_tokens_per_s": batch * seq * 1000 / ttft50 if ttft50 else None,
            "gen_p50_ms": pct("gen_samples_ms", 50),
            "pp_tokens_per_s": mean_rate("ttft_samples_ms", batch * seq), "tg_tokens_per_s": mean_rate("samples_ms", batch),
            "samples_per_s": None, "tokens_per_s": batch * 1000 / tpot50 if tpot50 else None,
            "ttft_samples_ms": raw.get("ttft_samples_ms"), "itl_samples_ms": raw.get("itl_samples_ms"),
            "gen_samples_ms": raw.get("gen_samples_ms")}


# -- validation ----------------------------------------------------------------------------------
class GenerationReference:
    """PyTorch on a few real prompts: the last position's logits and :data:`VALIDATE_TOKENS` greedy
    tokens, compared with each ONNX variant's (run through ORTModelForCausalLM)."""

    def __init__(self, model, texts: list[str], source: str):
        import torch

        self.model, self.texts, self.source = model, list(texts)[:VALIDATE_PROMPTS], source
        tokenizer = model.tokenizer()
        inputs = model.task_plugin.inputs
        self.prompts = [inputs.feed(model, tokenizer(t, return_tensors="np", truncation=True, max_length=64))
                        for t in self.texts]
        self.config = generation_config(model, VALIDATE_TOKENS)
        torch_model = model.torch_model()
        self.logits, self.tokens = [], []
        for p in self.prompts:
            with torch.inference_mode():
                out = torch_model(**{k: torch.from_numpy(v) for k, v in p.items()})
            self.logits.append(out.logits[0, -1].float().numpy())
            self.tokens.append(greedy(torch_model, dict(p), self.config)[0].numpy())

    def compare(self, path, device: str = "cpu") -> dict:
        import numpy as np
        import onnxruntime as ort
        import torch


        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        if path.suffix == ".gguf":  # llama.cpp's
            generator = LlamaCppGenerator(path, 1, 512)
        elif (path.parent / "genai_config.json").exists():  # onnxruntime-genai's own format
            generator = GenAIGenerator(path.parent, 1)
        else:
            generator = ort_generator(path.parent, path.name, ort.SessionOptions(), providers)
        cosines, diffs, same, first = [], [], 0, []
        for p, want_logits, want_tokens in zip(self.prompts, self.logits, self.tokens):
            with torch.inference_mode():
                got = generator(**{k: torch.from_numpy(v) for k, v in p.items()}).logits[0, -1].float().numpy()
            # centred: softmax ignores a shift of every logit, and so does this figure
            want64, got64 = want_logits.astype(np.float64), got.astype(np.float64)
            cosines.append(cosine_similarity(want64 - want64.mean(), got64 - got64.mean()))
            diffs.append(float(np.max(np.abs(want_logits - got))))
            tokens = greedy(generator, dict(p), self.config)[0].numpy()
            differ = np.nonzero(tokens != want_tokens)[0]
            first.append(int(differ[0]) if differ.size else len(want_tokens))
            same += int(not differ.size)
        return {"max_abs_diff": max(diffs), "cosine": float(np.min(cosines)), "argmax_agreement": same / len(first),
                "first_divergence": float(np.mean(first)), "greedy_tokens": VALIDATE_TOKENS,
                "texts": len(self.texts), "inputs_from": self.source, "outputs": ["logits"]}


def divergence(variant_name: str, figures: dict) -> str | None:
    floor = COSINE_FLOOR.get(variant_name, COSINE_FLOOR["int8"])
    cosine = figures.get("cosine")
    if cosine is None or not cosine >= floor:
        return (f"diverged from PyTorch: worst-prompt cosine of the last position's logits {cosine:.4f} < {floor} "
                f"(the floor for {variant_name}); greedy tokens matched on {figures.get('argmax_agreement', 0):.0%} "
                "of prompts")
    return None


def forward_outputs(backend, model, feed: dict) -> dict:
    """One batch of the evaluator's: a window's per-token negative log-likelihoods and argmax next
    tokens (computed here in float32, never the whole logits in float64); or, for a greedy batch
    (``new_tokens`` in the feed), the generated tokens."""
    import numpy as np
    import torch

    inputs = {k: torch.as_tensor(v) for k, v in model.task_plugin.inputs.feed(model, feed).items()}
    if "new_tokens" in feed:
        config = backend.generation_settings(generation_config(model, int(np.asarray(feed["new_tokens"]).ravel()[0])))
        return {"tokens": greedy(backend.generator(), inputs, config).numpy()}
    with torch.inference_mode():
        logits = backend.generator()(**inputs).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    target = inputs["input_ids"][:, 1:]
    nll = -logp.gather(-1, target[..., None])[..., 0]
    return {"nll": nll.double().numpy(), "argmax": logits[:, :-1].argmax(-1).numpy()}


