"""hfmagic: load, export, benchmark and evaluate Hugging Face models from a notebook.

``%load_ext hfmagic`` registers ``%load_model``, ``%export_onnx``, ``%benchmark``, ``%evaluate``
and ``%hfmagic``. The same functions are importable here and run by the ``hfmagic`` command.
Nothing heavy (torch, transformers, onnxruntime, ...) is imported until it is first needed.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

# onnxruntime's Linux build carries a telemetry client that looks up Microsoft's hosts once torch
# is loaded too. hfmagic promises offline, private benchmarks: switch it off before onnxruntime is
# first imported, here and (through the environment) in every worker. HFMAGIC_ALLOW_TELEMETRY=1 opts in.
if os.environ.get("HFMAGIC_ALLOW_TELEMETRY") != "1":
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = [
    "load_model", "export_onnx", "benchmark", "evaluate", "settings", "demo", "Dashboard",
    "ModelHandle", "Variant", "Variants", "HFMagicError", "load_ipython_extension",
]

_LAZY = {
    "load_model": "hfmagic.models", "ModelHandle": "hfmagic.models",
    "export_onnx": "hfmagic.export", "benchmark": "hfmagic.benchmarking",
    "evaluate": "hfmagic.evaluation", "settings": "hfmagic.config",
    "Variant": "hfmagic.variants", "Variants": "hfmagic.variants",
    "HFMagicError": "hfmagic.errors", "Dashboard": "hfmagic.widget",
}


def __getattr__(name: str):
    import importlib

    if name == "demo":
        return importlib.import_module("hfmagic.demo")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hfmagic' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """``%load_ext hfmagic``: register the magics (cheap: no heavy imports)."""
    from hfmagic.magics import HFMagics

    ipython.register_magics(HFMagics(ipython))


def unload_ipython_extension(ipython) -> None:
    from hfmagic.config import settings

    if settings() in ipython.configurables:
        ipython.configurables.remove(settings())
