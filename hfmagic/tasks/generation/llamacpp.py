"""llama.cpp for decoder LLMs (``llama-cpp-python``, built from its source by ``make``): GGUF files
as variants of their own and llama.cpp as the backend that runs them (``llama.cpp``).

**Variants** (level ``gguf``): ``gguf-f32``, an F32 GGUF written from the model's own weights
(:func:`hfmagic.tasks.generation.gguf.write_f32`: the same weights PyTorch runs, so it is the base
of the others); the types llama.cpp's quantizer makes from it (``llama_model_quantize``, what
``llama-quantize`` runs): ``gguf-q8_0`` (8-bit weights in blocks of 32, one scale each: the
scheme of ``int8-wo``), ``gguf-q6_k`` and ``gguf-q4_k_m`` (k-quants: 6 and about 4.5 bits, with
llama.cpp's own mix of types per tensor); and, for a model loaded from a GGUF file, that file as
it is (``gguf-<its type>``, e.g. ``gguf-q4_1``).

**Runs.** Token ids in, logits out: hfmagic tokenizes for every backend alike, so llama.cpp's own
tokenizer never runs. A generation is greedy (the argmax of each step's logits), exactly the new
tokens asked for, the clock read after each token as the other backends' loops do; perplexity
reads every position's logits (a second context with ``logits_all``). Threads: ``n_threads`` and
``n_threads_batch`` follow ``--threads``; built without OpenMP, ggml's threads live for one
graph's compute, so none is left spinning between runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hfmagic.core.backend import Backend
from hfmagic.core.errors import BuildError, UsageProblem
from hfmagic.onnx.plan import Step
from hfmagic.tasks.generation import gguf
from hfmagic.tasks.generation.evaluate import text_tokens

LLAMA_CPP = "llama-cpp-python==0.3.36"
INSTALL = f"make llama builds {LLAMA_CPP} from its source (about 4 minutes on 2 cores)"
# what llama.cpp's quantizer makes from the F32 file, by --quantize (auto: all three); with --calibration
# also the k-quants it weighs by an importance matrix (llama.cpp's calibrated quantization)
QUANT_TYPES = {"int8-wo": ("q8_0",), "int4": ("q4_k_m",), "auto": ("q8_0", "q6_k", "q4_k_m")}
IMATRIX_TYPES = {"int4": ("q4_k_m",), "auto": ("q5_k_m", "q4_k_m")}
IMATRIX = "-imatrix"  # the name's suffix of a type quantized with an importance matrix
DESCRIBE = {
    "q8_0": "Q8_0 by llama.cpp's quantizer: 8-bit weights in blocks of 32, one fp16 scale each (norms F32)",
    "q6_k": "Q6_K by llama.cpp's quantizer: 6-bit k-quant super-blocks of 256 (norms F32)",
    "q4_k_m": "Q4_K_M by llama.cpp's quantizer: 4-bit k-quants, with attn_v, ffn_down and the output in Q6_K "
              "where its mix says (norms F32)",
    "q5_k_m": "Q5_K_M by llama.cpp's quantizer: 5-bit k-quants, with attn_v, ffn_down and the output in Q6_K "
              "where its mix says (norms F32)",
}


def llamacpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def runs_on_llamacpp(model) -> bool:
    """Whether llama.cpp's variants are built by default: it is installed, and the model is a GGUF
    file's or one :func:`~hfmagic.tasks.generation.gguf.write_f32` writes (a Llama)."""
    return llamacpp_installed() and (model is None or model.config.get("model_type") in gguf.LLAMA_TYPES
                                     or gguf.source_file(model.path) is not None)


def gguf_steps(model, quantize: str, calibrated: bool = False) -> list[Step]:
    """llama.cpp's variants for ``--quantize``: ``gguf-f32`` (always: the others start from it), the
    types its quantizer makes (:data:`QUANT_TYPES`), and a GGUF model's own file (``gguf-<type>``;
    a type built from the F32 file that the loaded file already is, is not built again); ``calibrated``
    (calibration texts given): also the k-quants weighed by an importance matrix (``-imatrix``)."""
    own = gguf.source_file(model.path) if model is not None else None
    own_type = gguf.file_type(own) if own is not None else None
    steps = [Step("gguf-f32", "gguf", None, "gguf-f32")]
    steps += [Step(f"gguf-{kind}", "gguf", "gguf-f32", f"gguf-{kind}")
              for kind in QUANT_TYPES.get(quantize, ()) if kind != own_type]
    if calibrated:
        steps += [Step(f"gguf-{kind}{IMATRIX}", "gguf", "gguf-f32", f"gguf-{kind}{IMATRIX}")
                  for kind in IMATRIX_TYPES.get(quantize, ())]
    if own_type is not None and own_type != "f32":
        steps.append(Step(f"gguf-{own_type}", "gguf", None, "gguf-file"))
    return steps


def describe_gguf(step: Step, path: Path | None = None) -> str:
    """What a llama.cpp variant quantized, in words ("" for F32), with the types its tensors have
    once ``path`` is built (llama.cpp keeps a tensor in a wider type where its rows do not fill a
    type's blocks)."""
    kind = step.quant.removeprefix("gguf-").removesuffix(IMATRIX)
    if step.quant == "gguf-file":
        text = f"{step.name.removeprefix('gguf-').upper()}: the GGUF file as loaded (its own quantization)"
    elif kind == "f32":
        return ""
    else:
        text = DESCRIBE.get(kind, f"{kind.upper()} by llama.cpp's quantizer")
        if step.quant.endswith(IMATRIX):
            text = text.replace("llama.cpp's quantizer", "llama.cpp's quantizer weighing each column by an "
                                "importance matrix (llama-imatrix's, from the calibration texts)")
    if path is not None and path.is_file():
        import collections

        import gguf

        types = collections.Counter(t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors)
        text += "; tensors: " + ", ".join(f"{n} {t}" for t, n in types.most_common())
    return text


def build_gguf(model, step: Step, out: Path, source, data=None) -> str:
    """One llama.cpp variant into ``out`` (``model.gguf``); the command line that makes it. ``data``:
    the calibration texts an ``-imatrix`` type's importance matrix comes from."""
    import shutil

    file = out / step.file
    if step.quant == "gguf-f32":
        return gguf.write_f32(model, file)
    if step.quant == "gguf-file":
        own = gguf.source_file(model.path)
        shutil.copyfile(own, file)
        return f"cp {own} {step.name}/{step.file}  # the file as loaded"
    kind = step.quant.removeprefix("gguf-")
    if kind.endswith(IMATRIX):
        matrix, said = importance_matrix(model, data)
        command = quantize(source.path, file, kind.removesuffix(IMATRIX), f"{step.source}/", f"{step.name}/",
                           imatrix=matrix)
        return command.replace("llama-quantize ", "llama-quantize --imatrix IMATRIX ") + f"  # IMATRIX: {said}"
    return quantize(source.path, file, kind, f"{step.source}/", f"{step.name}/")


def quantize(source: Path, out: Path, kind: str, source_dir: str = "", out_dir: str = "", threads: int = 0,
             imatrix: dict | None = None) -> str:
    """``source`` (an F32 GGUF) quantized to ``kind`` (``q8_0``, ``q6_k``, ``q4_k_m``, ...) into
    ``out`` by llama.cpp's quantizer, each column's error weighed by ``imatrix`` when given
    (:func:`importance_matrix`); the ``llama-quantize`` line that does the same (the files shown in
    ``source_dir`` and ``out_dir``)."""
    import ctypes

    import gguf
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(gguf.LlamaFileType[f"MOSTLY_{kind.upper()}"])
    params.nthread = threads
    if imatrix is not None:
        table = _imatrix_table(imatrix)  # kept alive until the quantizer returns
        params.imatrix = ctypes.cast(table, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    with _quiet():
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
    if code != 0:
        raise BuildError(f"llama.cpp's quantizer returned {code} making {kind.upper()} from {source.name}")
    return f"llama-quantize {source_dir}{source.name} {out_dir}{out.name} {kind.upper()}"


IMATRIX_TOKENS, IMATRIX_WINDOW = 4096, 512  # llama-imatrix's chunks are 512 tokens too
_IMATRICES: dict = {}  # (weights, data) -> importance matrix: one per export, shared by its types


def importance_matrix(model, data) -> tuple[dict, str]:
    """llama-imatrix's importance matrix, computed by PyTorch on the model's own weights: for every
    weight matrix (by its GGUF name), the mean square of each input column's activations over the
    first :data:`IMATRIX_TOKENS` tokens of the calibration texts, in windows of
    :data:`IMATRIX_WINDOW`; and where it came from, in words. The quantizer weighs each column's
    rounding error by it (llama.cpp's calibrated k-quants)."""
    import gguf
    import numpy as np
    import torch

    key = (model.weights_sha256, str(getattr(data, "fingerprint", id(data))))
    if key in _IMATRICES:
        return _IMATRICES[key]
    ids = text_tokens(model.tokenizer(), model.task_plugin.inputs.examples(data) or [], IMATRIX_TOKENS)
    if len(ids) < IMATRIX_WINDOW:
        raise UsageProblem(f"the calibration texts give {len(ids)} tokens; llama.cpp's importance matrix needs at "
                           f"least {IMATRIX_WINDOW} (pass more or longer texts)")
    torch_model = model.torch_model()
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, model.config["num_hidden_layers"])
    tied = model.config.get("tie_word_embeddings", True)
    sums: dict[str, torch.Tensor] = {}
    rows: dict[str, int] = {}

    def hook(name):
        def collect(module, inputs, output):
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            sums[name] = sums.get(name, 0) + (x * x).sum(0).double()
            rows[name] = rows.get(name, 0) + x.shape[0]
        return collect

    hooks = []
    for name, module in torch_model.named_modules():
        if isinstance(module, torch.nn.Linear):
            gguf_name = names.get_name(f"{name}.weight", try_suffixes=(".weight",))
            if gguf_name == "output.weight" and tied:  # llama.cpp's output reads the embedding table
                gguf_name = "token_embd.weight"
            if gguf_name is not None:
                hooks.append(module.register_forward_hook(hook(gguf_name)))
    try:
        with torch.inference_mode():
            for start in range(0, len(ids) - IMATRIX_WINDOW + 1, IMATRIX_WINDOW):
                torch_model(torch.tensor([ids[start:start + IMATRIX_WINDOW]]))
    finally:
        for h in hooks:
            h.remove()
    used = len(ids) // IMATRIX_WINDOW * IMATRIX_WINDOW
    matrix = {name: (total / rows[name]).float().numpy().astype(np.float32) for name, total in sums.items()}
    source = getattr(data, "source", "the calibration texts")
    _IMATRICES[key] = matrix, f"an importance matrix from {used:,} tokens of {source}"
    return _IMATRICES[key]


def _imatrix_table(matrix: dict):
    """``matrix`` as llama.cpp's quantizer takes it: a null-terminated array of (name, data, size)."""
    import ctypes

    import llama_cpp

    entries = [llama_cpp.llama_model_imatrix_data(name.encode(), values.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                                  values.size) for name, values in matrix.items()]
    entries.append(llama_cpp.llama_model_imatrix_data(None, None, 0))
    return (llama_cpp.llama_model_imatrix_data * len(entries))(*entries)


class _quiet:
    """llama.cpp's log lines kept out of the cell: llama-cpp-python prints those at its logger's level
    or above to ``sys.stderr`` (its logger raised to errors), and ggml writes some to the process's."""

    def __enter__(self):
        import logging
        import os
        import sys

        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        sys.stderr.flush()
        self._saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc):
        import os

        os.dup2(self._saved, 2)
        os.close(self._saved)


class LlamaCppGenerator:
    """A GGUF file in llama.cpp behind the two calls hfmagic makes of a generator:
    ``generate(input_ids, attention_mask, generation_config, stopping_criteria)`` (greedy, exactly
    the config's new tokens, the criteria called after each token as transformers' loop calls
    them) and ``model(input_ids, attention_mask).logits`` (every position's)."""

    def __init__(self, path, threads: int, context: int = 2048):
        self.path, self.threads, self.context = Path(path), threads, context
        self.llm = self._open(context, all_logits=False)
        self._scorer = None  # every position's logits: another context on the same (mapped) weights

    def _open(self, context: int, all_logits: bool):
        from llama_cpp import Llama

        with _quiet():
            return Llama(model_path=str(self.path), n_ctx=context, n_batch=min(context, 512), n_threads=self.threads,
                         n_threads_batch=self.threads, logits_all=all_logits, seed=0, verbose=False)

    def _fits(self, length: int, context: int) -> None:
        if length > context:
            raise ValueError(f"{length} tokens do not fit llama.cpp's context of {context} here; use a shorter "
                             "prompt or fewer new tokens")

    def _greedy(self, ids, new_tokens: int, criteria, shape) -> list[int]:
        import llama_cpp
        import numpy as np

        llm = self.llm
        self._fits(len(ids) + new_tokens, self.context)
        llm.reset()
        llm.eval(ids)
        out = []
        for i in range(new_tokens):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
            token = int(logits.argmax())
            out.append(token)
            shape.tokens = [token]
            for criterion in criteria or ():
                criterion(shape, None)
            if i < new_tokens - 1:
                llm.eval([token])
        return out

    def generate(self, input_ids, attention_mask=None, generation_config=None, stopping_criteria=None):
        import numpy as np
        import torch

        from hfmagic.tasks.generation.genai import _Shape

        ids = np.asarray(input_ids)
        if attention_mask is not None and not bool(np.asarray(attention_mask).all()):
            raise ValueError("llama.cpp takes unpadded prompts of one length (a mask of ones)")
        if len(ids) > 1 and stopping_criteria:
            raise ValueError("llama.cpp's backend decodes one sequence at a time: time it at --batch-sizes 1")
        new = [self._greedy(row.tolist(), generation_config.max_new_tokens, stopping_criteria, _Shape(ids))
               for row in ids]
        return torch.from_numpy(np.concatenate([ids, np.asarray(new, dtype=ids.dtype)], axis=1).astype(np.int64))

    def __call__(self, input_ids, attention_mask=None, **kwargs):
        import numpy as np
        import torch

        from hfmagic.tasks.generation.genai import _Logits

        ids = np.asarray(input_ids)
        length = ids.shape[1]
        if self._scorer is None or self._scorer.n_ctx() < length:
            self._fits(length, self.context)
            self._scorer = self._open(max(512, 1 << (length - 1).bit_length()), all_logits=True)
        rows = []
        for row in ids:
            self._scorer.reset()
            self._scorer.eval(row.tolist())
            rows.append(np.array(self._scorer.scores[:length], dtype=np.float32))
        return _Logits(torch.from_numpy(np.stack(rows)))

    def close(self) -> None:
        for llm in (self.llm, self._scorer):
            if llm is not None:
                llm.close()
        self._scorer = None


class LlamaCpp(Backend):
    """llama.cpp (``llama_cpp.Llama``) on the CPU, ``n_threads`` = ``n_threads_batch`` = the thread
    setting, driven through :class:`LlamaCppGenerator` so that the timing and the greedy settings
    are the other backends'. Batch 1 only (one sequence at a time)."""

    NAME = "llama.cpp"
    RUNS = "gguf"
    DEFAULT = True
    MAX_BATCH = 1  # llama-cpp-python's Llama decodes one sequence
    THREADS = "llama.cpp n_threads and n_threads_batch"
    RUNS_WHAT = ("llama.cpp's GGUF variants", "gguf-f32")

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        if not llamacpp_installed():
            return False, f"llama-cpp-python is not installed; {INSTALL}"
        return True, ""

    @classmethod
    def imports(cls) -> None:
        import llama_cpp  # noqa: F401

    def load(self, variant, threads: int) -> None:
        context = min(variant.model.max_positions or 2048, 4096)
        self._generator = LlamaCppGenerator(variant.path, threads, context)
        self.threads = threads
        self.input_names = variant.model.task_plugin.inputs.model_inputs(variant.model)

    def run(self, inputs):
        return self._generator(**inputs)

    def threads_used(self) -> dict[str, int]:
        return {"llama.cpp n_threads": self.threads, "llama.cpp n_threads_batch": self.threads}

    def close(self) -> None:
        if self._generator is not None:
            self._generator.close()
            self._generator = None
