"""What a task may bring about models beside itself: kinds of model that are not transformers ones,
models known by name, and files that become models. A task lists them (``Task.KINDS``,
``Task.SOURCES``, ``Task.FORMATS``) and the registry finds them through the registered tasks
(:func:`hfmagic.tasks.registry.model_kind`, ``sources``, ``formats``), so a worker process that
knows the task knows them too.

- :class:`ModelKind`: what a saved model is made of and what runs it. A transformers model (its
  weights, PyTorch, its ONNX exports) is the default kind (:mod:`hfmagic.models.kinds`); the
  text tasks add the TF-IDF baseline (:mod:`hfmagic.tasks.text.tfidf`), a model with one way to run,
  no export, that reads texts end to end. The layers ask the kind, never its name.
- :class:`ModelSource`: a model ``%load_model`` knows by name (``demo``, ``tfidf``, ``smollm2``,
  ``digits-vit``), built once into the cache.
- :class:`ModelFormat`: a file that becomes a model folder (llama.cpp's GGUF, dequantised once).

Nothing here imports a heavy library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar


class ModelKind:
    """What a saved model is made of and what runs it (see the module docstring)."""

    NAME: ClassVar[str]                       # ModelHandle.framework: "transformers", "sklearn"
    WHAT: ClassVar[str] = ""                  # what it is, in messages: "a classical sklearn baseline"
    RUNTIME: ClassVar[str | None] = None      # one way to run: its one variant's name and runtime (None:
                                              # PyTorch and the ONNX exports, the variants export_onnx builds)
    FILE: ClassVar[str] = "(pytorch)"         # the variants table's file for a variant without one
    READS_EXAMPLES: ClassVar[bool] = False    # reads the task's examples itself, end to end (no preprocessor)
    NOTE: ClassVar[str | None] = None         # what %benchmark's notes say of its rows

    @classmethod
    def claims(cls, config: dict) -> bool:
        """Whether a saved config is a model of this kind."""
        raise NotImplementedError

    def weight_files(self, path: Path) -> tuple[Path, ...]:
        """The files its learned numbers are in (the weights; for a baseline, the files it saved)."""
        raise NotImplementedError

    def sha256(self, path: Path, files: tuple[Path, ...]) -> str:
        """Its identity in result rows and cache keys: a digest of ``files``."""
        raise NotImplementedError

    def parameters(self, model) -> int:
        """How many learned numbers it has."""
        raise NotImplementedError

    def check(self, model) -> None:
        """Refuse (one line) at load a folder whose files cannot be read (cut short, missing)."""

    def card_lines(self, model) -> list[tuple[str, str]]:
        """What the model card adds for this kind."""
        return []

    def inputs(self, model, examples, batch: int, size: int) -> dict:
        """What a model that reads examples itself is given for a shape (``READS_EXAMPLES``)."""
        raise NotImplementedError

    def own_examples(self, model, limit: int) -> list | None:
        """The examples it is timed on when %benchmark is given none (a model that reads examples
        itself cannot be fed synthetic ones): its own held-out split's; None for others."""
        return None

    def __repr__(self) -> str:
        return f"<model kind {self.NAME}>"


@dataclass(frozen=True)
class ModelSource:
    """A model ``%load_model`` knows by name. ``build(options)`` gives (its folder, built once into
    the cache; its held-out split or None); ``options`` are load_model's: ``task``, ``data``,
    ``text_column``, ``label_column``."""

    name: str
    build: Callable[[dict], tuple[Path, Any]]
    trains: bool = False      # trains on ``--data`` (a baseline); no other source takes it
    named_data: bool = False  # its held-out split is data of the same name: %evaluate and reruns read it so


@dataclass(frozen=True)
class ModelFormat:
    """A file that becomes a model folder: ``find(path)`` is the file a path is or holds (None: not
    one of this format), ``folder(file)`` the saved folder it becomes (made once into the cache);
    ``reference(folder)``: what PyTorch runs of a folder made so (the reference of every figure), or
    None for a folder it did not make."""

    name: str
    find: Callable[[Path], Path | None]
    folder: Callable[[Path], Path]
    reference: Callable[[Path], str | None] | None = None
