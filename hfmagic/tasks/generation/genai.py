"""onnxruntime-genai for decoder LLMs: its model builder (its own format, built from the saved
folder) and its runtime, a backend of its own (``onnxruntime-genai``: its decode loop in C++, which
keeps the KV cache in place between steps). The text-generation task registers the backend
(``Task.BACKENDS``); its variants are ``genai-fp32``, ``genai-int8-wo`` and ``genai-int4``, built when it
is installed."""

from __future__ import annotations

from hfmagic.core.backend import Backend
from hfmagic.core.errors import BuildError
from hfmagic.tasks.generation.quantize import nbits_command, quantize_graph


def genai_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime_genai") is not None


def build_genai(model, out, precision: str, block_size: int, int4_method: str = "rtn") -> str:
    """onnxruntime-genai's model builder on the model's saved folder (offline: ``-i`` is the folder).
    int4 with ``kquant``: the builder's own ``k_quant_mixed`` (llama.cpp's Q4_K_M mix). int4 with
    ``rtn`` or ``hqq``, and ``int8-wo``: the builder's fp32 graph, its MatMuls then quantized as for
    onnxruntime's own loop (:func:`~hfmagic.tasks.generation.quantize.quantize_graph`: the output
    projection at 8 bits; the builder's own RTN int4 has it at 4, and it offers no HQQ)."""
    import subprocess
    import sys
    import tempfile

    bits = 8 if precision == "int8-wo" else 4
    post = precision != "fp32" and not (bits == 4 and int4_method == "kquant")  # the builder's fp32, quantized after
    target = out / ".fp32" if post else out
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".tmp-genai-cache-") as cache:
        args = ["-m", str(model.path), "-i", str(model.path), "-o", str(target), "-p", "fp32" if post else precision,
                "-e", "cpu", "-c", cache]
        if precision == "int4" and not post:
            args += ["--extra_options", f"int4_block_size={block_size}", "int4_algo_config=k_quant_mixed"]
        done = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", *args],
                              capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"onnxruntime-genai's model builder failed: {last[:300]}")
    shown = [{cache: "CACHE", str(target): f"onnx/genai-{'fp32' if post else precision}"}.get(a, a) for a in args]
    command = "python -m onnxruntime_genai.models.builder " + " ".join(shown)
    if post:
        import shutil

        import onnx

        method = int4_method if bits == 4 else "rtn"
        quantized = quantize_graph(onnx.load(str(target / "model.onnx")), block_size, method, bits)
        quantized.save_model_to_file(str(out / "model.onnx"), use_external_data_format=True)  # + .onnx.data
        for f in target.iterdir():
            if f.is_file() and not f.name.startswith("model.onnx"):
                shutil.copy2(f, out / f.name)
        shutil.rmtree(target)
        command += " && " + nbits_command("onnx/genai-fp32/model.onnx", f"onnx/genai-{precision}/model.onnx", block_size,
                                          method, bits, external=True)
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
            shape.tokens = [int(t) for t in np.asarray(generator.get_next_tokens()).reshape(-1)]
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
    """What a stopping criterion reads of the sequences so far: their batch size and device, and
    each sequence's newest token (``tokens``: what a served stream sends)."""

    def __init__(self, input_ids):
        import torch

        self.shape = (len(input_ids),)
        self.device = torch.device("cpu")
        self.tokens: list[int] = []


class _Logits:
    def __init__(self, logits):
        self.logits = logits


class OnnxRuntimeGenAI(Backend):
    """``onnxruntime_genai.Model`` on the CPU, ``intra_op_num_threads`` = the thread setting
    (a config overlay), driven through :class:`GenAIGenerator` so that the timing and the greedy
    settings are the other backends'. Its idle threads may spin (its session config takes no
    ``allow_spinning``)."""

    NAME = "onnxruntime-genai"
    THREADS = "onnxruntime-genai intra_op_num_threads"
    RUNS_WHAT = ("onnxruntime-genai's variants", "genai-fp32")
    RUNS = "genai"
    DEFAULT = True

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        if not genai_installed():
            return False, "onnxruntime-genai is not installed; pip install --no-deps onnxruntime-genai==0.11.2"
        return True, ""

    @classmethod
    def imports(cls) -> None:
        import onnxruntime_genai  # noqa: F401

    def load(self, variant, threads: int) -> None:
        self._generator = GenAIGenerator(variant.folder, threads)
        self.threads = threads
        self.input_names = variant.model.task_plugin.inputs.model_inputs(variant.model)

    def run(self, inputs):
        return self._generator(**inputs)

    def threads_used(self) -> dict[str, int]:
        return {"onnxruntime-genai intra_op_num_threads": self.threads}
