"""hfmagic's settings, as traitlets, shared by the Python API, the magics and the command line.

In IPython they are reached with ``%config HFMagic`` (``%config HFMagic.threads = 2``); from Python
with ``hfmagic.settings()``. The cache folder defaults to the platform's user cache folder
(``$XDG_CACHE_HOME/hfmagic`` on Linux) and ``HFMAGIC_CACHE_DIR`` overrides it.

Every value is checked when it is set, and a bad one is refused with one line
(:class:`SettingRefused`) while the setting keeps its value. How IPython's ``%config`` applies a
value decides how: it runs ``update_config``, whose ``_load_config`` sets the trait inside
``hold_trait_notifications``. There a wrong type fails at once, but the ``@validate`` methods run
only when that block ends, after the new value is stored, and the block puts the old value back
only for a ``TraitError``; ``%config`` then catches the exception and logs its message (one
``ERROR:root:`` line on stderr). So every refusal here is a ``TraitError`` (rolled back, shown by
``%config``), and also a :class:`~hfmagic.core.errors.UsageProblem` (one line in the magics and the CLI).
"""

from __future__ import annotations

import os
import re
import reprlib
import tempfile
from pathlib import Path

from traitlets import Bool, Int, List, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from hfmagic.core.envcard import physical_cores
from hfmagic.core.errors import UsageProblem

CACHE_ENV = "HFMAGIC_CACHE_DIR"

# setting -> (what it takes, an example value): the words of every refusal
RULES = {
    "threads": ("0 (one per physical core) or a positive whole number", "2"),
    "cache_dir": ("a folder hfmagic can create and write in", "'/tmp/hfmagic-cache'"),
    "batch_sizes": ("a non-empty list of positive whole numbers", "[1, 8]"),
    "seq_lens": ("a non-empty list of positive whole numbers", "[128]"),
    "widget": ("True or False", "False"),
    "store": ("True or False", "False"),
    "cluster": ("'' (this machine), HOST:PORT, ray://HOST:PORT or auto", "'10.0.0.5:6379'"),
    "store_path": ("'' (runs.sqlite in the cache folder) or a file in a folder hfmagic can create and "
                   "write in", "'/tmp/runs.sqlite'"),
}


_SHORT = reprlib.Repr()  # a value as the user typed it, cut only when very long
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist = 160, 80, 12


class SettingRefused(TraitError, UsageProblem):
    """A value a setting does not take. A ``TraitError``, so traitlets keeps the old value and
    ``%config`` shows the message; a ``UsageProblem``, so the magics and the CLI show one line."""


def refusal(name: str, value, why: str | None = None, item: bool = False) -> SettingRefused:
    """The one-line refusal of ``value`` (an ``item`` of the list given) for setting ``name``:
    what is wrong, what the setting takes, and that it keeps its value."""
    rule, example = RULES[name]
    hint = " (without quotes)" if isinstance(value, str) and not example.startswith("'") else ""
    head = f"HFMagic.{name}: item {_SHORT.repr(value)}" if item else f"HFMagic.{name} = {_SHORT.repr(value)}"
    return SettingRefused(f"{head} refused{': ' + why if why else ''}; {name} takes {rule}, "
                          f"e.g. %config HFMagic.{name} = {example}{hint}; the setting keeps its value")


def unwritable_folder(path: Path) -> str | None:
    """Why hfmagic cannot use ``path`` as a folder to write in (creating it if needed), or None."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"{path} is a file, not a folder"
    except OSError as exc:
        return f"cannot create {path} ({exc.strerror or exc})"
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return f"cannot write in {path} ({exc.strerror or exc})"
    return None


class _Refusing:
    """A setting's trait whose type errors are :func:`refusal` lines (traitlets' own name the class)."""

    def error(self, obj, value, error=None, info=None):
        # ``error`` is set when an item of a list failed (``value`` is that item)
        raise refusal(self.name, value, "not a whole number" if error is not None else None, item=error is not None)


class _Int(_Refusing, Int):
    pass


class _List(_Refusing, List):
    pass


class _Bool(_Refusing, Bool):
    pass


class _Unicode(_Refusing, Unicode):
    pass


def default_cache_dir() -> str:
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    import platformdirs

    return platformdirs.user_cache_dir("hfmagic", appauthor=False)


_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$")


def address_problem(address: str) -> str | None:
    """Why ``address`` is not one ``--cluster`` and ``HFMagic.cluster`` take ('' for none, HOST:PORT,
    ray://HOST:PORT, auto), or None."""
    if address in ("", "auto"):
        return None
    scheme, sep, rest = address.partition("://")
    if sep and scheme != "ray":
        return f"{scheme}:// is not Ray's scheme (ray://)"
    host, _, port = (rest if sep else address).rpartition(":")
    if not host or not _HOST.match(host):
        return "no HOST:PORT in it" if not host else f"{host!r} is not a host name or IP address"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"{port!r} is not a port number"
    return None


class HFMagic(Configurable):
    """hfmagic's settings (``%config HFMagic.<name> = value``)."""

    threads = _Int(
        0,
        help="Threads every backend uses for one inference (intra-op). 0 means one per physical "
        "core, as onnxruntime and torch choose by default; the value used is recorded with each run.",
    ).tag(config=True)
    cache_dir = _Unicode(
        help=f"Folder for the demo model, exported variants and the run store (env {CACHE_ENV}); "
        "it must be a folder hfmagic can create and write in."
    ).tag(config=True)
    batch_sizes = _List(Int(), [1, 8], help="Batch sizes %benchmark sweeps by default.").tag(config=True)
    seq_lens = _List(Int(), [128], help="Sequence lengths %benchmark sweeps by default.").tag(config=True)
    widget = _Bool(True, help="Show results in the interactive dashboard where the frontend can.").tag(
        config=True
    )
    store = _Bool(True, help="Record every export, benchmark and evaluation in the run store.").tag(
        config=True
    )
    cluster = _Unicode(
        "", help="A Ray cluster's address (HOST:PORT, ray://HOST:PORT, or auto: the one started on this "
        "machine) where %benchmark and %evaluate run their workers; empty: this machine."
    ).tag(config=True)
    store_path = _Unicode(
        "", help="The run store's SQLite file (empty: runs.sqlite in the cache folder); its folder must "
        "be one hfmagic can create and write in."
    ).tag(config=True)

    @default("cache_dir")
    def _cache_dir_default(self) -> str:
        return default_cache_dir()

    def _load_config(self, cfg, section_names=None, traits=None):
        # read every value first: traitlets rolls a refused value back to the value it replaced, and
        # a default never read is not there yet (it would roll cache_dir back to '', the cwd)
        for name in self.trait_names(config=True):
            getattr(self, name)
        super()._load_config(cfg, section_names=section_names, traits=traits)

    @validate("threads")
    def _check_threads(self, proposal):
        value = proposal["value"]
        if isinstance(value, bool) or value < 0:
            raise refusal("threads", value)
        return value

    @validate("batch_sizes", "seq_lens")
    def _check_positive(self, proposal):
        name, value = proposal["trait"].name, proposal["value"]
        if not value:
            raise refusal(name, value, "the list is empty")
        bad = [v for v in value if isinstance(v, bool) or v <= 0]
        if bad:
            raise refusal(name, value, f"{bad[0]!r} is not a positive whole number")
        return value

    @validate("cache_dir")
    def _check_cache_dir(self, proposal):
        value = proposal["value"]
        if not value.strip():
            raise refusal("cache_dir", value, "no folder given")
        path = Path(value).expanduser().absolute()
        why = unwritable_folder(path)
        if why:
            raise refusal("cache_dir", value, why)
        return str(path)

    @validate("cluster")
    def _check_cluster(self, proposal):
        value = proposal["value"].strip()
        if problem := address_problem(value):
            raise refusal("cluster", proposal["value"], problem)
        return value

    @validate("store_path")
    def _check_store_path(self, proposal):
        value = proposal["value"]
        if not value:
            return value
        path = Path(value).expanduser().absolute()
        if path.is_dir():
            raise refusal("store_path", value, f"{path} is a folder, not a file")
        why = unwritable_folder(path.parent)
        if why is None and path.exists():
            try:
                with path.open("r+b"):
                    pass
            except OSError as exc:
                why = f"cannot write to {path} ({exc.strerror or exc})"
        if why:
            raise refusal("store_path", value, why)
        return str(path)

    @property
    def cache_path(self) -> Path:
        path = Path(self.cache_dir).expanduser()
        why = unwritable_folder(path)
        if why:  # the default (or $HFMAGIC_CACHE_DIR) is checked here, when it is first used
            raise UsageProblem(f"the cache folder cannot be used: {why}; set HFMagic.cache_dir (or "
                               f"{CACHE_ENV}) to a folder you can write in")
        return path

    def resolved_threads(self) -> int:
        """The thread count to apply: the setting, or the number of physical cores."""
        if self.threads:
            return self.threads

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
