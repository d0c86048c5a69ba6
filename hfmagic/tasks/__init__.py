"""Task plugins: everything that differs between text classification, NER, QA, decoders, images and
speech lives in one folder per task (text/, generation/, vision/, speech/), each implementing the
protocols of :mod:`hfmagic.tasks.base` and :mod:`hfmagic.tasks.protocols`, and is registered by name
in :mod:`hfmagic.tasks.registry`.
The registry imports no plugin: ``import hfmagic`` registers the built-in ones
(:mod:`hfmagic.tasks.builtin`); a task of one's own is registered by calling :func:`register`.
"""

from hfmagic.tasks.base import Task
from hfmagic.tasks.kinds import ModelFormat, ModelKind, ModelSource
from hfmagic.tasks.protocols import Export, Inputs, Measurement, Validation
from hfmagic.tasks.registry import (ALIASES, ensure, formats, get_task, infer_task, model_kind, names, origin, register,
                                    serving, sources, unregister)

__all__ = ["ALIASES", "Export", "Inputs", "Measurement", "ModelFormat", "ModelKind", "ModelSource", "Task",
           "Validation", "ensure", "formats", "get_task", "infer_task", "model_kind", "names", "origin", "register",
           "serving", "sources", "unregister"]
