"""hfmagic's settings, as traitlets, shared by the Python API, the magics and the command line.

In IPython they are reached with ``%config HFMagic`` (``%config HFMagic.threads = 2``); from Python
with ``hfmagic.settings()``. The cache folder defaults to the platform's user cache folder
(``$XDG_CACHE_HOME/hfmagic`` on Linux) and ``HFMAGIC_CACHE_DIR`` overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

from traitlets import Bool, Int, List, Unicode, default, validate
from traitlets.config import Configurable

from hfmagic.errors import UsageProblem

CACHE_ENV = "HFMAGIC_CACHE_DIR"


def default_cache_dir() -> str:
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    import platformdirs

    return platformdirs.user_cache_dir("hfmagic", appauthor=False)


class HFMagic(Configurable):
    """hfmagic's settings (``%config HFMagic.<name> = value``)."""

    threads = Int(
        0,
        help="Threads every backend uses for one inference (intra-op). 0 means one per physical "
        "core, as onnxruntime and torch choose by default; the value used is recorded with each run.",
    ).tag(config=True)
    cache_dir = Unicode(
        help=f"Folder for the demo model, exported variants and the run store (env {CACHE_ENV})."
    ).tag(config=True)
    batch_sizes = List(Int(), [1, 8], help="Batch sizes %benchmark sweeps by default.").tag(config=True)
    seq_lens = List(Int(), [128], help="Sequence lengths %benchmark sweeps by default.").tag(config=True)
    widget = Bool(True, help="Show results in the interactive dashboard where the frontend can.").tag(
        config=True
    )
    store = Bool(True, help="Record every export, benchmark and evaluation in the run store.").tag(
        config=True
    )
    store_path = Unicode(
        "", help="The run store's SQLite file (empty: runs.sqlite in the cache folder)."
    ).tag(config=True)

    @default("cache_dir")
    def _cache_dir_default(self) -> str:
        return default_cache_dir()

    @validate("threads")
    def _check_threads(self, proposal):
        if proposal["value"] < 0:
            raise UsageProblem("threads must be 0 (one per core) or a positive number")
        return proposal["value"]

    @validate("batch_sizes", "seq_lens")
    def _check_positive(self, proposal):
        if not proposal["value"] or any(v <= 0 for v in proposal["value"]):
            raise UsageProblem(f"{proposal['trait'].name} must be a non-empty list of positive numbers")
        return proposal["value"]

    @property
    def cache_path(self) -> Path:
        path = Path(self.cache_dir).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def resolved_threads(self) -> int:
        """The thread count to apply: the setting, or the number of physical cores."""
        if self.threads:
            return self.threads
        from hfmagic.envcard import physical_cores

        return physical_cores()


_settings: HFMagic | None = None


def settings() -> HFMagic:
    """The process-wide settings object (the same one ``%config HFMagic`` changes)."""
    global _settings
    if _settings is None:
        _settings = HFMagic()
    return _settings


def use_settings(instance: HFMagic) -> None:
    """Make ``instance`` the process-wide settings (the extension registers the shell's one)."""
    global _settings
    _settings = instance
