"""The task registry: one small class per task, registered by name (see :mod:`hfmagic.tasks.base`).

Adding a task is one folder and one call: write a :class:`~hfmagic.tasks.base.Task` subclass (what
it is, how its models load, and its parts: inputs, measurement, export recipe, validation,
evaluator) and ``register`` it; ``%load_model`` then infers it from a saved config and every step
asks it what to do (docs/extending.md). What a registered task brings beside itself (model kinds,
models known by name, file formats, backends) is found here too. The text tasks live in
:mod:`hfmagic.tasks.text.task`.
"""

from __future__ import annotations

from hfmagic.core import backend as backends
from hfmagic.core import origins
from hfmagic.core.errors import UnsupportedError
from hfmagic.tasks.base import Task
from hfmagic.tasks.kinds import ModelFormat, ModelKind, ModelSource

_REGISTRY: dict[str, type[Task]] = {}
_INSTANCES: dict[str, Task] = {}
# names people also use for a registered task (transformers' pipeline aliases)
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}


REQUIRED = ("NAME", "MODALITY", "AUTO_CLASS")


def register(cls: type[Task]) -> type[Task]:
    """Register a task class under its ``NAME`` (usable as a decorator); a later one replaces it.
    The backends it brings (``BACKENDS``) are registered with it."""
    missing = [a for a in REQUIRED if not hasattr(cls, a)] + ([] if hasattr(cls.Inputs, "AXIS") else ["Inputs.AXIS"])
    if missing:
        raise UnsupportedError(f"the task class {cls.__qualname__} lacks {', '.join(missing)}; a task says its name, "
                               "its modality, the Auto class that loads it and the size axis of its inputs "
                               "(see hfmagic.tasks.base)")
    _REGISTRY[cls.NAME] = cls
    _INSTANCES.pop(cls.NAME, None)
    for backend in cls.BACKENDS:
        backends.register(backend)
    return cls


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)
    _INSTANCES.pop(name, None)


def names() -> list[str]:
    return list(_REGISTRY)


def get_task(name: str) -> Task:
    """The task object registered as ``name`` (or one of its aliases); one line listing them if none."""
    name = ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise UnsupportedError(f"unknown task {name!r}; hfmagic's tasks are: {', '.join(_REGISTRY)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _REGISTRY[name]()
    return _INSTANCES[name]


def origin(name: str) -> dict:
    """Where a registered task's class lives (module and qualified name): a worker process is a
    fresh interpreter, and a task registered at run time (a notebook's, a test's) reaches it so."""
    return origins.origin(type(get_task(name)), name)


def ensure(spec: dict | None) -> None:
    """Register the task ``origin()`` described, when this process does not know it yet (a worker)."""
    if not spec or spec["name"] in _REGISTRY:
        return
    cls = origins.find(spec, "task")
    if spec["name"] not in _REGISTRY:  # importing the module may have registered it already
        register(cls)


def serving(config: dict) -> list[str]:
    """The registered tasks a saved model of ``config``'s architecture can be loaded for (``serves``)."""
    return [name for name, cls in _REGISTRY.items() if cls.serves(config)]


def infer_task(config: dict, where: str = "this model") -> str:
    """The registered task a saved config is for, or one line naming what it is and the tasks that exist."""
    # the newest registered first (a plugin that recognises a config beats the built-in it extends),
    # fallbacks (bare encoders) last
    ordered = sorted(reversed(list(_REGISTRY.values())), key=lambda cls: cls.FALLBACK)
    for cls in ordered:
        if cls.matches(config):
            return cls.NAME
    archs = ", ".join(config.get("architectures") or []) or f"model_type {config.get('model_type', '?')}"
    raise UnsupportedError(f"no hfmagic task loads {where} ({archs}); hfmagic's tasks are: "
                           f"{', '.join(_REGISTRY)} (pass --task one of them if it is one)")


def model_kind(config: dict) -> ModelKind | None:
    """The kind a registered task brings that claims a saved config (None: a transformers model)."""
    for kind in _brought("KINDS"):
        if kind.claims(config):
            return kind
    return None


def sources() -> dict[str, ModelSource]:
    """The models %load_model knows by name, from every registered task (``SOURCES``)."""
    return {source.name: source for source in _brought("SOURCES")}


def formats() -> list[ModelFormat]:
    """The files that become models (GGUF), from every registered task (``FORMATS``)."""
    return _brought("FORMATS")


def _brought(what: str) -> list:
    """What the registered tasks bring (a task extending another brings the same once)."""
    return list({id(item): item for cls in _REGISTRY.values() for item in getattr(cls, what)}.values())
