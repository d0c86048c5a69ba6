"""PyTorch eager, and the same model through ``torch.compile``."""

from __future__ import annotations

import contextlib
import shutil

from hfmagic.core.backend import Backend
from hfmagic.core.compilecache import no_global_headers


class Torch(Backend):
    """The transformers model in eval mode under ``torch.inference_mode``, on the CPU, with
    ``torch.set_num_threads(threads)`` (restored on close) and, in a worker process, one inter-op
    thread (torch lets that be set once per process, so a kernel's is left as it is)."""

    NAME = "torch"
    THREADS = "torch.set_num_threads"
    RUNS_WHAT = ("the torch variant", "torch")
    RUNS = "torch"
    DEFAULT = True

    @classmethod
    def imports(cls) -> None:
        import torch  # noqa: F401
        import transformers  # noqa: F401

    def load(self, variant, threads: int) -> None:
        import torch

        self._torch = torch
        self._previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        if self.own_process and torch.get_num_interop_threads() != 1:
            torch.set_num_interop_threads(1)
        self.model = variant.model.torch_model()
        # what the tokenizer makes and the forward takes (the model's task reconciles the two)
        self.input_names = variant.model.task_plugin.inputs.model_inputs(variant.model, self.model.forward)

    def generator(self):
        return self.model

    def prepare(self, inputs):
        return {k: self._torch.from_numpy(v) for k, v in inputs.items()}

    def run(self, inputs):
        with self._torch.inference_mode():
            return self.model(**inputs)

    def threads_used(self) -> dict[str, int]:
        return {"torch intra-op threads": self._torch.get_num_threads()}

    def close(self) -> None:
        if hasattr(self, "_previous_threads"):
            self._torch.set_num_threads(self._previous_threads)


class TorchCompile(Torch):
    """``torch.compile(model)`` (TorchInductor); for a decoder LLM its ``forward`` over a static KV
    cache. Compiling happens on the first run of each new shape, so it is counted in ``first_ms``
    (and the warm-up runs), never in the timed samples."""

    NAME = "torch-compile"
    DEFAULT = False  # asked for by name: compiling costs seconds per shape

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
            return False, ("torch-compile needs a C++ compiler for TorchInductor on the CPU; "
                           "install g++ (e.g. apt-get install g++)")
        return True, ""

    def load(self, variant, threads: int) -> None:
        # the compiler cache in hfmagic's folder, its precompiled headers (global, in the temporary
        # folder) off until close: compiling happens in the first runs, after load returns
        self._compiling = contextlib.ExitStack()
        self._compiling.enter_context(no_global_headers())
        super().load(variant, threads)
        if variant.model.task_plugin.measurement.GENERATES:  # generate() calls the model's forward: that is what gets compiled
            import copy

            # on a shallow copy (the same weights): the handle's own model stays eager for what runs
            # after this in the same process (--inline, %evaluate), which would otherwise recompile per shape
            self.model = copy.copy(self.model)
            self.model.forward = self._torch.compile(self.model.forward)
        else:
            self.model = self._torch.compile(self.model)

    def close(self) -> None:
        if hasattr(self, "_compiling"):
            self._compiling.close()
        super().close()

    def generation_settings(self, config):
        """A static KV cache, as transformers advises for torch.compile: every decode step has the
        same shapes, so it compiles once per prompt shape (in the warm-up runs) instead of per step."""
        config.cache_implementation = "static"
        return config
