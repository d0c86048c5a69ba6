"""torch's compiler caches kept in hfmagic's cache folder (issue 25: nothing written outside it).

TorchInductor writes its cache (compiled kernels, graphs) to ``/tmp/torchinductor_<user>`` unless
``TORCHINDUCTOR_CACHE_DIR`` is set, and its precompiled C++ headers there whatever it is set to
(torch keeps them global on purpose). torch.compile (the ``torch-compile`` backend) and torch's
ONNX exporter (which traces through torch.export) both reach it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hfmagic.core.config import default_cache_dir, settings
from hfmagic.core.errors import UsageProblem

INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"


_OURS: dict[str, str | None] = {"folder": None}  # what hfmagic set it to (a folder it may move on)


def keep_compile_cache_in_hfmagic(env=os.environ, at_import: bool = False) -> None:
    """``TORCHINDUCTOR_CACHE_DIR`` in ``env`` set to ``<cache>/torchinductor`` (again, should the cache
    folder have changed), unless the user set it: a folder they chose is left as it is. It must be
    set before ``torch._inductor`` is first imported, which fixes a folder there: ``import hfmagic``
    sets it (``at_import``: the default cache folder, checked when it is used)."""
    if env.get(INDUCTOR_CACHE) not in (None, _OURS["folder"]):
        return
    try:
        cache = Path(default_cache_dir()) if at_import else settings().cache_path
    except UsageProblem:  # no usable cache folder: torch's own default
        return
    env[INDUCTOR_CACHE] = _OURS["folder"] = str(cache / "torchinductor")


@contextlib.contextmanager
def no_global_headers():
    """TorchInductor's header precompiling off while the block runs (the headers would go to the
    temporary folder, where they outlive the run), then as it was."""
    import torch._inductor.config as inductor

    keep_compile_cache_in_hfmagic()
    before = inductor.cpp_cache_precompile_headers
    inductor.cpp_cache_precompile_headers = False
    try:
        yield
    finally:
        inductor.cpp_cache_precompile_headers = before
