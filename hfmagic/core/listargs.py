"""Arguments that take several names or numbers (``metrics``, ``variants``, ``backends``,
``batch_sizes``, ...), read one way everywhere: a list, or as a user types it, a comma-separated
string (``"accuracy,f1"``, ``"1,8"``) or one value (``"accuracy"``, ``8``).

The magics and the command line read their options with :func:`as_list`; the Python API functions
are wrapped in :func:`list_arguments`, so ``evaluate(v, metrics="accuracy")`` means
``metrics=["accuracy"]`` and not the letters of the word.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from hfmagic.core.errors import UsageProblem


def as_list(value: Any, cast: Callable[[str], Any] = str, what: str = "value") -> Any:
    """``"1,8"`` -> ``[1, 8]``, ``"fp32"`` -> ``["fp32"]``, ``8`` -> ``[8]`` (with ``cast=int``), a
    list or tuple -> a list; None stays None and anything else is left for the caller to refuse.
    A bad or empty item of a string (``"1,,8"``, ``"1,8,"``) is one clear line."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return list(value)
    if cast is not str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, str):
        return value
    items = [t.strip() for t in value.split(",")]
    example = "1,8" if cast is int else "a,b"
    if "" in items:
        where = "nothing given" if len(items) == 1 else f"item {items.index('') + 1} of {len(items)} is empty"
        raise UsageProblem(f"could not read {what}s from {value!r}: {where}; give a comma-separated list "
                           f"without empty items, e.g. {example}")
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise UsageProblem(f"could not read {what}s from {value!r}; give a comma-separated list, "
                           f"e.g. {example}") from None


def list_arguments(**kinds: tuple[Callable[[str], Any], str]) -> Callable:
    """Decorate an API function so that each named argument (name -> (cast, what it is)) goes
    through :func:`as_list` before the function sees it."""

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            bound = signature.bind_partial(*args, **kwargs)
            for name, (cast, what) in kinds.items():
                if name in bound.arguments:
                    bound.arguments[name] = as_list(bound.arguments[name], cast, what)
            return func(*bound.args, **bound.kwargs)

        return wrapper

    return decorate


VARIANTS, BACKENDS, METRICS = (str, "variant"), (str, "backend"), (str, "metric")
