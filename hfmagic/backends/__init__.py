"""The runtimes a variant can be measured on: one small class per backend, registered by name.

A backend has a ``NAME``, says which variants it ``RUNS`` (``"torch"`` for the PyTorch model,
``"onnx"`` for ONNX files), tells whether it can run here (``is_available() -> (bool, reason)``),
imports its libraries (``imports()``), then ``load(variant, threads)`` once and ``run(inputs)`` many times. ``prepare(inputs)`` turns
numpy arrays into what ``run`` takes, outside the timed loop. Every backend applies the same
``threads`` (intra-op) and reports what it ended up using in ``threads_used()``.

A backend whose ``HARDWARE`` is set (a GPU provider) is shown as unavailable, with its reason, when
this machine lacks it; any other unavailable backend (a missing extra) is an error before the
sweep starts. Modules here import nothing heavy until a backend is used.
"""

from __future__ import annotations

from hfmagic.backends.base import Backend
from hfmagic.backends.genai import OnnxRuntimeGenAI
from hfmagic.backends.onnxruntime import OnnxRuntime, OnnxRuntimeCuda, OnnxRuntimeTensorRT
from hfmagic.backends.openvino import OpenVINO
from hfmagic.backends.sklearn import Sklearn
from hfmagic.backends.torch import Torch, TorchCompile
from hfmagic.core.errors import UnsupportedError

BACKENDS: dict[str, type[Backend]] = {cls.NAME: cls for cls in (
    Torch, TorchCompile, OnnxRuntime, OnnxRuntimeCuda, OnnxRuntimeTensorRT, OpenVINO, Sklearn, OnnxRuntimeGenAI)}


def get_backend(name: str) -> type[Backend]:
    try:
        return BACKENDS[name]
    except KeyError:
        raise UnsupportedError(f"unknown backend {name!r}; use one of: {', '.join(BACKENDS)}") from None


def default_backends(kind: str) -> list[str]:
    """What a variant of ``kind`` is measured on unless --backends says otherwise: the CPU
    backend, and ONNX Runtime's GPU providers where this machine has them."""
    if kind == "torch":
        return [Torch.NAME]
    if kind == "sklearn":
        return [Sklearn.NAME]
    if kind == "genai":
        return [OnnxRuntimeGenAI.NAME]
    return [OnnxRuntime.NAME] + [b.NAME for b in (OnnxRuntimeCuda, OnnxRuntimeTensorRT) if b.is_available()[0]]
