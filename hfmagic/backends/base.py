"""What every backend provides (see :mod:`hfmagic.backends`)."""

from __future__ import annotations

from typing import Any, ClassVar

from hfmagic.core.errors import UnsupportedError


class Backend:
    """What every backend provides (see the module docstring)."""

    NAME: ClassVar[str]
    RUNS: ClassVar[str]                   # "torch", "onnx" or "sklearn" (a classical baseline)
    HARDWARE: ClassVar[str | None] = None  # "cuda" for GPU providers: unavailable -> rows, not errors

    def __init__(self, own_process: bool = False) -> None:
        self.input_names: list[str] = []
        self.own_process = own_process  # a worker's: process-wide settings need not be undone
        self.park_when_idle = False  # True: threads stop busy-waiting once a run ends (interleaved rounds)

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        return True, ""

    @classmethod
    def imports(cls) -> None:
        """Import the libraries ``load`` needs (timed apart: start-up, not model loading)."""

    def load(self, variant, threads: int) -> None:
        raise NotImplementedError

    def prepare(self, inputs: dict[str, Any]) -> Any:
        return inputs

    def run(self, inputs: Any) -> Any:
        raise NotImplementedError

    _generator: Any = None  # a decoder's: what generate() runs on, set by load()

    def generator(self):
        """What ``generate()`` runs on, for a text-generation model (transformers' GenerationMixin)."""
        if self._generator is None:
            raise UnsupportedError(f"the {self.NAME} backend does not run text-generation models yet; use torch, "
                                   "onnxruntime or openvino")
        return self._generator

    def forward_logits(self, inputs: dict):
        """One forward pass of a decoder's generator over numpy inputs (no cache): its logits."""
        import torch

        with torch.inference_mode():
            return self._generator(**{k: torch.from_numpy(v) for k, v in inputs.items()})

    def generation_settings(self, config):
        """The greedy ``GenerationConfig`` every backend gets, with what this backend's loop needs
        on top (torch-compile: a static KV cache); the decoding itself stays the same."""
        return config

    def threads_used(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        """Undo process-wide settings (matters when measuring inline, in the kernel)."""
