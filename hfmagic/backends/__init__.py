"""The generic runtimes a variant can be measured on, one small class per backend: PyTorch (eager
and compiled), ONNX Runtime (CPU, CUDA, TensorRT) and OpenVINO, registered by name here (``import
hfmagic`` imports this package first). What a backend is and the registry itself live in
:mod:`hfmagic.core.backend`, so that a task registers the runtimes only its models use beside its
own code (``Task.BACKENDS``). Modules here import nothing heavy until a backend is used.
"""

from __future__ import annotations

from hfmagic.backends.onnxruntime import OnnxRuntime, OnnxRuntimeCuda, OnnxRuntimeTensorRT
from hfmagic.backends.openvino import OpenVINO
from hfmagic.backends.torch import Torch, TorchCompile
from hfmagic.core.backend import BACKENDS, Backend, default_backends, ensure, get_backend, origin, register

for _cls in (Torch, TorchCompile, OnnxRuntime, OnnxRuntimeCuda, OnnxRuntimeTensorRT, OpenVINO):
    register(_cls)

__all__ = ["BACKENDS", "Backend", "OnnxRuntime", "OnnxRuntimeCuda", "OnnxRuntimeTensorRT", "OpenVINO", "Torch",
           "TorchCompile", "default_backends", "ensure", "get_backend", "origin", "register"]
