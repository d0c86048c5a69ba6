"""Decoder LLMs (``text-generation``): next tokens, with a KV cache.

What differs from the encoder tasks, all of it here:

- the model is a causal LM (``AutoModelForCausalLM``), exported with its KV cache (optimum's
  ``text-generation-with-past``); a GGUF file loads too (:mod:`hfmagic.tasks.generation.gguf`), and
  ``%load_model smollm2``;
- its variants: fp32, ``int8`` (dynamic, MatMul weights only, per-channel) and ``int4``
  (weight-only MatMulNBits, block 32, HQQ by default), validated by the last position's logits and
  greedy agreement with PyTorch (:mod:`hfmagic.tasks.generation.decoding`); onnxruntime-genai's
  builds and runtime where it is installed (:mod:`hfmagic.tasks.generation.genai`);
- one measurement is a whole greedy generation of ``new_tokens`` tokens from a prompt of
  ``seq_len`` tokens (no early stop: every backend generates exactly as many, through the same
  ``transformers`` ``generate`` loop); its figures are time to first token (prefill), time per
  output token after the first, inter-token latency, decode and prefill tokens/s;
- quality is perplexity on real text (sliding windows), next to greedy agreement
  (:mod:`hfmagic.tasks.generation.evaluate`).
"""

from __future__ import annotations

from typing import ClassVar

from hfmagic.core.errors import UnsupportedError, UsageProblem
from hfmagic.core.records import Field, columns, declare, keys
from hfmagic.onnx.build import describe_quantization, int4_how
from hfmagic.onnx.plan import Step
from hfmagic.tasks import register
from hfmagic.tasks.generation import gguf
from hfmagic.tasks.generation.decoding import (COSINE_FLOOR, VALIDATE_TOKENS, GenerationReference, divergence, figures,
                                               forward_outputs, ort_generator, time_generations)
from hfmagic.tasks.generation.evaluate import PerplexityEvaluator
from hfmagic.tasks.generation.genai import OnnxRuntimeGenAI, build_genai, genai_installed
from hfmagic.tasks.generation.llamacpp import (INSTALL, LlamaCpp, build_gguf, describe_gguf, gguf_steps, llamacpp_installed,
                                               runs_on_llamacpp)
from hfmagic.tasks.generation.quantize import check_quantized, convert_fp16, quantize_int4
from hfmagic.tasks.generation.requests import PromptRequests
from hfmagic.tasks.protocols import Measurement
from hfmagic.tasks.tokens import TextTask, TokenExport, TokenInputs, TokenValidation

DEFAULT_NEW_TOKENS = 64
INT4_BLOCK = 32
# the row figures a generation adds (None on other tasks' rows), and its evaluation's own
_ms = lambda key, title, doc: Field(key, title, "ms", ".1f", doc)  # noqa: E731
ROW_FIELDS = declare(
    Field("new_tokens", "new", "tokens", "d", "tokens generated per measured run (greedy, no early stop)"),
    _ms("ttft_p50_ms", "TTFT p50 ms", "time to first token (the prompt's prefill), 50th percentile"),
    _ms("ttft_p90_ms", "TTFT p90", "time to first token, 90th percentile"),
    _ms("tpot_p50_ms", "TPOT p50 ms", "time per output token after the first, 50th percentile (the row's p50_ms)"),
    _ms("tpot_p90_ms", "TPOT p90", "time per output token after the first, 90th percentile"),
    _ms("itl_p50_ms", "ITL p50", "inter-token latency: the gap between two output tokens, 50th percentile"),
    _ms("itl_p99_ms", "ITL p99", "inter-token latency, 99th percentile"),
    Field("decode_tokens_per_s", "decode tok/s", "tokens/s", ".1f", "output tokens per second after the first"),
    Field("prefill_tokens_per_s", "prefill tok/s", "tokens/s", ".0f", "prompt tokens per second of the prefill"),
    _ms("gen_p50_ms", "gen p50 ms", "a whole generation's time, 50th percentile"),
    Field("pp_tokens_per_s", "pp t/s", "tokens/s", ".0f", "llama-bench's pp figure: prompt tokens over the time to "
                                                          "first token, the mean over runs"),
    Field("tg_tokens_per_s", "tg t/s", "tokens/s", ".1f", "llama-bench's tg figure: output tokens after the first "
                                                          "over their time, the mean over runs (llama-bench's start "
                                                          "at an empty context, these after the prompt)"),
    Field("ttft_samples_ms", unit="ms", doc="every timed generation's time to first token"),
    Field("itl_samples_ms", unit="ms", doc="every gap between two output tokens"),
    Field("gen_samples_ms", unit="ms", doc="every timed generation's whole time"),
)
ROW_KEYS = keys(ROW_FIELDS)
EVAL_FIELDS = declare(
    Field("first_divergence", "first diff at", "tokens", ".1f", "mean position of the first greedy token that "
                                                                "differs from the reference's"),
    Field("token_agreement", "next-token agree", "fraction", ".2%", "share of scored positions whose most likely "
                                                                    "next token is the reference's"),
    Field("perplexity_ratio", "perplexity ratio", "", ".4f", "its perplexity over the reference's"),
)


def generation_columns() -> list:
    """A generation benchmark's table: prefill and decode figures in place of one latency."""
    return columns("variant", "backend", "batch_size", "seq_len", "new_tokens", "ttft_p50_ms", "ttft_p90_ms",
                   "tpot_p50_ms", "tpot_p90_ms", "itl_p50_ms", "itl_p99_ms", "decode_tokens_per_s",
                   "prefill_tokens_per_s", "pp_tokens_per_s", "tg_tokens_per_s", "gen_p50_ms", "peak_mem_mb", "size_mb", "runs", "speedup", "status",
                   seq_len="prompt", speedup="TPOT speed-up [95% CI]")


class GenerationInputs(TokenInputs):
    def model_inputs(self, model, forward=None) -> list[str]:
        return ["input_ids", "attention_mask"]  # generate() makes the positions and the cache

    def chat_note(self, model, sizes: list[int]) -> str:
        from hfmagic.tasks.generation.chat import check_room

        return check_room(model, sizes)

    def chat(self, model, batch: int, seq: int, examples: list | None) -> dict:
        from hfmagic.tasks.generation.chat import chat_inputs

        return chat_inputs(model, batch, seq, examples)


class GenerationMeasurement(Measurement):
    """One run is a whole greedy generation: TTFT, TPOT, inter-token latencies, decode tokens/s."""

    END_TO_END = False  # the prompt's tokenizing is not timed (it is a small part of a generation)
    GENERATES = True
    WARMUPS = 2         # one generation is already many runs: two warm it up
    ROW_KEYS: ClassVar[tuple[str, ...]] = ROW_KEYS

    def new_tokens(self, asked, model) -> int | None:
        """64 by default; at least 2 (time per output token is measured after the first)."""

        if asked is None:
            return DEFAULT_NEW_TOKENS
        if isinstance(asked, bool) or not isinstance(asked, int) or asked < 2:
            raise UsageProblem(f"--new-tokens must be 2 or more (time per output token is measured after the first), "
                               f"got {asked!r}")
        return asked

    def warmups(self, asked: int) -> int:
        return min(asked, self.WARMUPS)

    def run_once(self, backend, model, prepared, job: dict) -> None:
        self.timed_runs(backend, model, prepared, 1, 0.0, job)

    def timed_runs(self, backend, model, prepared, runs: int, min_time: float, job: dict) -> dict:
        """``runs`` greedy generations (at least ``min_time`` s): samples_ms is each one's time per
        output token after the first (TPOT), with TTFT, the inter-token gaps and the whole
        generation's time beside it."""

        return time_generations(backend, model, prepared, job.get("new_tokens") or DEFAULT_NEW_TOKENS, runs, min_time)

    def forward_outputs(self, backend, model, feed: dict) -> dict:
        return forward_outputs(backend, model, feed)

    def row_figures(self, raw: dict, batch: int, size: int) -> dict:
        return figures(raw, batch, size)

    def columns(self, columns: list) -> list:
        return generation_columns()

    def ort_generator(self, variant, options, providers):
        generator = ort_generator(variant.folder, variant.path.name, options, providers)
        return generator, generator.session


class GenerationExport(TokenExport):
    """fp32 with its KV cache, weight-only int8 and int4 of its MatMul weights (dynamic int8, which
    quantizes the activations too, on request), fp16 for GPUs, and onnxruntime-genai's and llama.cpp's
    own builds where they are installed."""

    DEFAULT_LEVELS: ClassVar[tuple[str, ...]] = ("fp32",)
    LEVELS: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "genai", "gguf")  # fp16: for GPUs; genai, gguf: the runtimes' own
    # auto's: weight-only int8 and int4. Dynamic int8 (--quantize dynamic) quantizes each activation per
    # tensor too, which costs a decoder's perplexity far more than its weights do (SmolLM2: 159%)
    VARIANTS: ClassVar[tuple[str, ...]] = ("torch", "fp32", "int8-wo", "int4")
    GENAI_VARIANTS: ClassVar[tuple[str, ...]] = ("genai-fp32", "genai-int8-wo", "genai-int4")  # when installed
    QUANT_OPERATORS: ClassVar[tuple[str, ...]] = ("MatMul",)  # dynamic int8: weights of MatMuls only
    DYNAMIC_OPTIONS: ClassVar[bool] = False  # its own steps name int8 once: the CPU's preset

    def default_levels(self, model=None) -> tuple[str, ...]:
        return (self.DEFAULT_LEVELS + (("genai",) if genai_installed() else ())
                + (("gguf",) if runs_on_llamacpp(model) else ()))

    def variant_names(self, model=None) -> tuple[str, ...]:
        return self.VARIANTS + ("int8", "fp16") + self.GENAI_VARIANTS + self._gguf_names(model)

    def default_variants(self, model=None) -> list[str]:
        return (list(self.VARIANTS) + (list(self.GENAI_VARIANTS) if genai_installed() else [])
                + (list(self._gguf_names(model)) if runs_on_llamacpp(model) else []))

    def _gguf_names(self, model) -> tuple[str, ...]:
        """llama.cpp's variants: those built from the weights, and a GGUF model's own file as it is."""
        return tuple(dict.fromkeys(s.name for s in gguf_steps(model, "auto")))

    def steps(self, levels: list[str], quantize: str, static: bool, options: dict) -> list:
        """Level fp32: optimum's export, then weight-only int8 (``int8-wo``), int4 (``int4``), both
        (``auto``) or dynamic int8 (``dynamic``) from it; level fp16: the fp32 export in float16 (for GPUs); level genai: onnxruntime-genai's
        builder, fp32 and (``int4``/``auto``) int4."""

        genai = "genai" in levels
        if genai and not genai_installed():
            raise UnsupportedError("--levels genai needs onnxruntime-genai: pip install --no-deps "
                                   "onnxruntime-genai==0.11.2")
        if quantize == "static":
            raise UnsupportedError("static int8 is not built for text-generation models; use --quantize int8-wo, "
                                   "int4, auto (both) or dynamic")
        ort = "fp32" in levels  # optimum's export and onnxruntime's quantizers
        steps = [Step("fp32", "fp32", include=ort)] if ort or "fp16" in levels else []
        if "fp16" in levels:  # for GPUs: onnxruntime's float16 converter over the fp32 export
            steps.append(Step("fp16", "fp16", "fp32", "fp16"))
        if quantize == "dynamic" and ort:
            steps.append(Step("int8", "fp32", "fp32", "dynamic"))
        if quantize in ("auto", "int8-wo") and ort:
            steps.append(Step("int8-wo", "fp32", "fp32", "int8-wo"))
        if quantize in ("auto", "int4") and ort:
            steps.append(Step("int4", "fp32", "fp32", "int4"))
        if genai:  # onnxruntime-genai's own format and loop, built from the same folder
            steps.append(Step("genai-fp32", "fp32", None, "genai-fp32"))
            if quantize in ("auto", "int8-wo"):
                steps.append(Step("genai-int8-wo", "fp32", None, "genai-int8-wo"))
            if quantize in ("auto", "int4"):
                steps.append(Step("genai-int4", "fp32", None, "genai-int4"))
        if "gguf" in levels:  # llama.cpp's files: F32 of the weights, its quantizer's types, the file loaded
            if not llamacpp_installed():
                raise UnsupportedError(f"--levels gguf needs llama.cpp: {INSTALL}")
            steps += gguf_steps(options.get("model"), quantize, calibrated=static)
        return steps

    def build_step(self, model, step, out, source, options: dict) -> str | None:
        """int4 and int8-wo (MatMulNBits), fp16 (onnxruntime's float16 converter) and onnxruntime-genai's builds."""
        if step.quant == "int4":
            return quantize_int4(source.folder, source.path.name, out, options["block_size"], options["int4_method"])
        if step.quant == "int8-wo":
            return quantize_int4(source.folder, source.path.name, out, options["block_size"], "rtn", bits=8)
        if step.quant == "fp16":
            return convert_fp16(source.folder, source.path.name, out)
        if step.runtime == "gguf":
            return build_gguf(model, step, out, source, options.get("data"))
        if step.quant and step.quant.startswith("genai"):
            return build_genai(model, out, step.quant.removeprefix("genai-"), options["block_size"],
                               options["int4_method"])
        return None

    def quantization(self, step, options: dict, path=None) -> str | None:
        """onnxruntime-genai's and llama.cpp's builds, in words."""
        if step.quant == "genai-int4":
            how = ("by onnxruntime-genai's builder (k_quant_mixed)" if options["int4_method"] == "kquant" else
                   "over onnxruntime-genai's fp32 graph")
            return f"int4 weight-only MatMulNBits, block {options['block_size']}, {how}, {int4_how(options['int4_method'])}"
        if step.quant == "genai-int8-wo":
            return describe_quantization("int8-wo", options["isa"], options["per_channel"], options["block_size"]) + (
                ", over onnxruntime-genai's fp32 graph")
        if step.quant == "genai-fp32":
            return ""
        if step.runtime == "gguf":
            return describe_gguf(step, path)
        return None

    def check_built(self, quant: str | None, path) -> str | None:
        return check_quantized(quant, path)


class GenerationValidation(TokenValidation):
    """The last position's logits and greedy tokens on a few real prompts, against PyTorch's."""

    def reference(self, model, examples: list, source: str):
        return GenerationReference(model, examples, source)

    def rule(self) -> str:
        floors = ", ".join(f"{v} ({k})" for k, v in COSINE_FLOOR.items())
        return (f"a variant diverges below a worst-prompt cosine of the last position's logits of {floors}; "
                f"'argmax agree' is the share of prompts whose {VALIDATE_TOKENS} greedy tokens all match PyTorch's")

    def divergence(self, variant_name: str, figures: dict) -> str | None:
        return divergence(variant_name, figures)


@register
class TextGeneration(TextTask):
    NAME = "text-generation"
    AUTO_CLASS = "AutoModelForCausalLM"
    EXPORT_TASK = "text-generation-with-past"
    ARCHITECTURES = ("ForCausalLM", "LMHeadModel")
    DESCRIPTION = "next tokens (a decoder LLM, with its KV cache)"
    DEFAULT_METRICS = ("perplexity",)
    CLASSICAL_BASELINE = None
    Inputs = GenerationInputs
    Measurement = GenerationMeasurement
    Export = GenerationExport
    Validation = GenerationValidation
    Requests = PromptRequests
    SOURCES = (gguf.SOURCE,)
    FORMATS = (gguf.FORMAT,)
    BACKENDS = (OnnxRuntimeGenAI, LlamaCpp)

    def card_lines(self, model) -> list[tuple[str, str]]:
        """Layers, heads, KV heads, context and vocabulary, from the config (no torch import)."""
        c = model.config
        get = lambda *keys: next((c[k] for k in keys if c.get(k) is not None), None)  # noqa: E731
        heads = get("num_attention_heads", "n_head")
        kv = get("num_key_value_heads") or heads
        return [("layers", str(get("num_hidden_layers", "n_layer"))),
                ("attention heads", f"{heads} ({kv} KV heads{', grouped-query' if kv != heads else ''})"),
                ("hidden size", str(get("hidden_size", "n_embd"))),
                ("context", f"{model.max_positions} tokens"),
                ("vocabulary", f"{get('vocab_size'):,} tokens"),
                ("dtype", str(get("torch_dtype", "dtype") or "float32")),
                ("tied embeddings", "yes" if c.get("tie_word_embeddings", True) else "no")]

    def evaluator(self):
        return PerplexityEvaluator(self)
