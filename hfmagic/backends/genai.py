"""onnxruntime-genai: its own model format (built from the saved folder by its model builder) and
its own decode loop in C++, which keeps the KV cache in place between steps."""

from __future__ import annotations

import importlib.util

from hfmagic.backends.base import Backend


class OnnxRuntimeGenAI(Backend):
    """``onnxruntime_genai.Model`` on the CPU, ``intra_op_num_threads`` = the thread setting
    (a config overlay), driven through :class:`hfmagic.tasks.generation.decoding.GenAIGenerator` so that the
    timing and the greedy settings are the other backends'. Its idle threads may spin (its
    session config takes no ``allow_spinning``)."""

    NAME = "onnxruntime-genai"
    RUNS = "genai"

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime_genai") is None:
            return False, "onnxruntime-genai is not installed; pip install --no-deps onnxruntime-genai==0.11.2"
        return True, ""

    @classmethod
    def imports(cls) -> None:
        import onnxruntime_genai  # noqa: F401

    def load(self, variant, threads: int) -> None:
        from hfmagic.tasks.generation.decoding import GenAIGenerator

        self._generator = GenAIGenerator(variant.folder, threads)
        self.threads = threads
        self.input_names = variant.model.task_plugin.model_inputs(variant.model)

    def run(self, inputs):
        return self._generator(**inputs)

    def threads_used(self) -> dict[str, int]:
        return {"onnxruntime-genai intra_op_num_threads": self.threads}
