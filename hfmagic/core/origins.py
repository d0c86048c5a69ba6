"""Where a class registered at run time lives (its module and qualified name), so that a worker
process, a fresh interpreter, can import and register it too: a task or a backend of one's own."""

from __future__ import annotations

from hfmagic.core.errors import UnsupportedError


def origin(cls: type, name: str) -> dict:
    return {"name": name, "module": cls.__module__, "qualname": cls.__qualname__}


def find(spec: dict, what: str) -> type:
    """The class ``origin`` described (``what``: "task", "backend", for the message), imported here."""
    import importlib

    try:
        obj = importlib.import_module(spec["module"])
        for part in spec["qualname"].split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UnsupportedError(f"the {what} {spec['name']!r} is defined in {spec['module']}, which a worker process "
                               f"cannot import ({exc}); define it in an importable module, or pass --inline") from None
    return obj
