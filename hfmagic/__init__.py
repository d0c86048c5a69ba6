"""hfmagic: load, export, benchmark and evaluate Hugging Face models from a notebook.

``%load_ext hfmagic`` registers ``%load_model``, ``%export_onnx``, ``%benchmark``, ``%evaluate``, ``%optimize``,
``%serve``, ``%loadtest`` and ``%hfmagic``. The same functions are importable here and run by the ``hfmagic`` command.
Nothing heavy (torch, transformers, onnxruntime, ...) is imported until it is first needed.
"""

from __future__ import annotations


from hfmagic.core.version import __version__  # noqa: F401

# onnxruntime's Linux build carries a telemetry client that looks up Microsoft's hosts once torch
# is loaded too. hfmagic promises offline, private benchmarks: switch it off before onnxruntime is
# first imported, here and (through the environment) in every worker. HFMAGIC_ALLOW_TELEMETRY=1 opts in.
from hfmagic.core.telemetry import onnxruntime_off  # noqa: E402

onnxruntime_off()

# torch.compile's and torch.export's compiler cache in hfmagic's cache folder, not /tmp (read when
# torch._inductor is first imported: here, before anything imports it, and in every worker)
from hfmagic.core.compilecache import keep_compile_cache_in_hfmagic  # noqa: E402

keep_compile_cache_in_hfmagic(at_import=True)

# the generic backends (torch, onnxruntime, OpenVINO), then the built-in tasks (text, generation, vision,
# speech, each with the backends only its models use) are registered here, at the top, so that the
# registry below knows them in every process (a worker too) without importing any plugin itself
from hfmagic import backends as _backends  # noqa: E402,F401
from hfmagic.tasks import builtin as _builtin_tasks  # noqa: E402,F401

__all__ = [
    "load_model", "export_onnx", "benchmark", "evaluate", "optimize", "serve", "loadtest", "settings", "demo",
    "Dashboard",
    "ModelHandle", "Variant", "Variants", "HFMagicError", "load_ipython_extension",
]

_LAZY = {
    "load_model": "hfmagic.models.handle", "ModelHandle": "hfmagic.models.handle",
    "export_onnx": "hfmagic.export.api", "benchmark": "hfmagic.benchmarking.api",
    "evaluate": "hfmagic.evaluation.api", "optimize": "hfmagic.optimizing.api", "settings": "hfmagic.core.config",
    "serve": "hfmagic.serving.api", "loadtest": "hfmagic.serving.loadtest",
    "Variant": "hfmagic.models.variants", "Variants": "hfmagic.models.variants",
    "HFMagicError": "hfmagic.core.errors", "Dashboard": "hfmagic.ui.widget",
}


def __getattr__(name: str):
    import importlib

    if name == "demo":
        return importlib.import_module("hfmagic.tasks.text.demo")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hfmagic' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """``%load_ext hfmagic``: register the magics (cheap: no heavy imports), and show an hfmagic
    error raised by the Python API in a cell (``hfmagic.Dashboard(...)``) as one line, as the
    magics do; ``%tb`` still shows its traceback."""
    from hfmagic.surface.magics import HFMagics

    ipython.register_magics(HFMagics(ipython))
    _show_errors_in_one_line(ipython)


def unload_ipython_extension(ipython) -> None:
    from hfmagic.core.config import settings

    if settings() in ipython.configurables:
        ipython.configurables.remove(settings())
    previous = getattr(ipython, "_hfmagic_previous_custom_exc", None)
    if previous is not None:  # the handler that was there before ours (IPython's none by default)
        ipython.custom_exceptions, ipython.CustomTB = previous
        del ipython._hfmagic_previous_custom_exc


def _show_errors_in_one_line(ipython) -> None:
    """Register an IPython custom exception handler for HFMagicError; one set before is kept for
    its own exceptions."""
    from hfmagic.core.errors import HFMagicError

    if getattr(ipython, "_hfmagic_previous_custom_exc", None) is not None:
        return  # loaded already
    before, before_handler = ipython.custom_exceptions, ipython.CustomTB

    def handler(shell, etype, value, tb, tb_offset=None):
        if not issubclass(etype, HFMagicError):
            return before_handler(etype, value, tb, tb_offset=tb_offset)
        shell._get_exc_info((etype, value, tb))  # sys.last_*: what %tb shows in full
        shell._showtraceback(etype, value, [f"hfmagic: {value}"])  # ipykernel sends it as the cell's error
        return None

    ipython.set_custom_exc((HFMagicError, *before), handler)
    ipython._hfmagic_previous_custom_exc = (before, before_handler)
