"""What every backend provides, and the backends registered by name.

A backend has a ``NAME``, says which variants it ``RUNS`` (``"torch"`` for the PyTorch model,
``"onnx"`` for ONNX files, or a runtime of a task's own: a TF-IDF baseline's ``"sklearn"``),
tells whether it can run here (``is_available() -> (bool, reason)``), imports its libraries
(``imports()``), then ``load(variant, threads)`` once and ``run(inputs)`` many times.
``prepare(inputs)`` turns numpy arrays into what ``run`` takes, outside the timed loop. Every
backend applies the same ``threads`` (intra-op) and reports what it ended up using in
``threads_used()``.

A backend whose ``HARDWARE`` is set (a GPU provider) is shown as unavailable, with its reason, when
this machine lacks it; any other unavailable backend (a missing extra) is an error before the
sweep starts. ``DEFAULT`` backends measure their kind of variant when --backends is not given.

The registry sits here, below every layer that names a backend (a worker process registers one
registered at run time from the job: ``origin``, ``ensure``): :mod:`hfmagic.backends` registers
the generic runtimes (torch, onnxruntime, OpenVINO), and a task registers the ones only its models
use (``Task.BACKENDS``: the TF-IDF baseline's scikit-learn, a decoder's onnxruntime-genai).
Nothing here imports anything heavy until a backend is used.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hfmagic.core import origins
from hfmagic.core.errors import UnsupportedError


class Backend:
    """What every backend provides (see the module docstring)."""

    NAME: ClassVar[str]
    RUNS: ClassVar[str]                   # the variants' kind it runs: "torch", "onnx", or a task's own
    HARDWARE: ClassVar[str | None] = None  # "cuda" for GPU providers: unavailable -> rows, not errors
    DEFAULT: ClassVar[bool] = False       # measures its kind of variant unless --backends says otherwise
    MAX_BATCH: ClassVar[int | None] = None  # the largest batch it runs (None: any); larger shapes are rows saying so
    THREADS: ClassVar[str] = ""           # the setting --threads sets, in words (the benchmark's note)
    RUNS_WHAT: ClassVar[tuple[str, str] | None] = None  # its variants in words, and one to add to --variants

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


BACKENDS: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Register a backend class under its ``NAME`` (usable as a decorator); a later one replaces it."""
    BACKENDS[cls.NAME] = cls
    return cls


def get_backend(name: str) -> type[Backend]:
    try:
        return BACKENDS[name]
    except KeyError:
        raise UnsupportedError(f"unknown backend {name!r}; use one of: {', '.join(BACKENDS)}") from None


def default_backends(kind: str) -> list[str]:
    """What a variant of ``kind`` is measured on unless --backends says otherwise: the ``DEFAULT``
    backends that run it (the CPU's, and ONNX Runtime's GPU providers where this machine has them)."""
    return [cls.NAME for cls in BACKENDS.values()
            if cls.RUNS == kind and cls.DEFAULT and (not cls.HARDWARE or cls.is_available()[0])]


def origin(name: str) -> dict:
    """Where a registered backend's class lives: a worker process registers one of a notebook's so."""
    return origins.origin(get_backend(name), name)


def ensure(spec: dict | None) -> None:
    """Register the backend ``origin()`` described, when this process does not know it yet (a worker)."""
    if spec and spec["name"] not in BACKENDS:
        cls = origins.find(spec, "backend")
        BACKENDS.setdefault(spec["name"], cls)  # importing its module may have registered it already
