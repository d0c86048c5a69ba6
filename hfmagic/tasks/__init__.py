"""Task plugins: everything that differs between text classification, NER, QA, decoders, images and
speech lives in one folder per task (text/, generation/, vision/, speech/), each implementing the
protocols of :mod:`hfmagic.tasks.base`, and is registered by name in :mod:`hfmagic.tasks.registry`.
The registry imports no plugin: ``import hfmagic`` registers the built-in ones
(:mod:`hfmagic.tasks.builtin`); a task of one's own is registered by calling :func:`register`.
"""

from hfmagic.tasks.registry import (ALIASES, ensure, get_task, infer_task, names, origin, register, serving,
                                    unregister)

__all__ = ["ALIASES", "ensure", "get_task", "infer_task", "names", "origin", "register", "serving", "unregister"]
