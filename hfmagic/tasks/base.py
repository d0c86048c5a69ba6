"""What a task is to hfmagic: everything that differs between text classification, NER, QA, ...

A task is one small class registered by name (:func:`hfmagic.tasks.register`). Export, validation,
the worker, benchmark, evaluate, the dashboard and the store ask the model's task instead of
branching on its name:

- what it loads: ``AUTO_CLASS`` (transformers), ``EXPORT_TASK`` (optimum's exporter), the files a
  folder needs beside its weights (``check_folder``), whether it predicts named classes
  (``LABELLED``);
- which saved models it takes: ``matches(config)`` (by architecture, then modality);
- the limit of a shape's sequence axis (``position_limit``); a shape is batch x seq for every task
  so far (a decoder adds new tokens), and the plan, worker and rows still hold those two axes
  themselves (task-declared axes come with images and audio);
- its inputs: which inputs the model takes (``model_inputs``, reconciled with the tokenizer and the
  model's forward), synthetic inputs of exactly a shape with the right dtypes
  (``synthetic_inputs``), real examples encoded to a shape (``encode``);
- how two runs' outputs are compared in export validation (``token_level``, ``decisions``);
- what %evaluate does with it: its default metrics and an evaluator (``evaluator()``), or a
  sentence saying why it has none.

Nothing here imports a heavy library at module level.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from hfmagic.errors import ModelSourceError


class Task:
    """The base every task plugin extends (see the module docstring)."""

    NAME: ClassVar[str]
    AUTO_CLASS: ClassVar[str]                   # transformers' Auto class that loads it
    EXPORT_TASK: ClassVar[str | None] = None    # optimum's task name (default: NAME)
    ARCHITECTURES: ClassVar[tuple[str, ...]] = ()  # architecture-name suffixes it is saved as
    MODALITY: ClassVar[str] = "text"
    LABELLED: ClassVar[bool] = False            # predicts the classes the config's id2label names
    DEFAULT_METRICS: ClassVar[tuple[str, ...]] = ()
    CLASSICAL_BASELINE: ClassVar[str | None] = None  # why there is none, or its %load_model name
    DESCRIPTION: ClassVar[str] = ""
    FALLBACK: ClassVar[bool] = False            # tried after every other task (bare encoders)
    DEFAULT_LEVELS: ClassVar[tuple[str, ...]] = ("fp32", "O2")  # what export_onnx builds when not told
    LEVELS: ClassVar[tuple[str, ...]] = ("fp32", "O1", "O2", "O3", "O4")  # what --levels takes
    GENERATES: ClassVar[bool] = False           # a measurement is a generation (decoder LLMs)
    QUANT_OPERATORS: ClassVar[tuple[str, ...] | None] = None  # dynamic int8's operators (None: optimum's)

    # -- which models ------------------------------------------------------------------------
    @classmethod
    def export_task(cls) -> str:
        return cls.EXPORT_TASK or cls.NAME

    @classmethod
    def matches(cls, config: dict) -> bool:
        """Whether a saved config's architecture is one this task loads."""
        return any(a.endswith(cls.ARCHITECTURES) for a in config.get("architectures") or []) \
            and cls.fits_modality(config)

    @classmethod
    def fits_modality(cls, config: dict) -> bool:
        return True

    def check_folder(self, path: Path) -> None:
        """Refuse a folder that lacks what this task needs beside the weights (one line)."""

    def card_lines(self, model) -> list[tuple[str, str]]:
        """What the model card adds for this task (read off the config)."""
        return []

    def labels(self, config: dict) -> dict[int, str]:
        if not self.LABELLED:
            return {}
        return {int(k): v for k, v in (config.get("id2label") or {}).items()}

    # -- shapes ------------------------------------------------------------------------------
    def position_limit(self, model) -> int | None:
        return None

    # -- inputs ------------------------------------------------------------------------------
    def model_inputs(self, model, forward=None) -> list[str]:
        raise NotImplementedError

    def synthetic_inputs(self, names: list[str], shape: dict, config: dict) -> dict:
        raise NotImplementedError

    # -- measuring ---------------------------------------------------------------------------
    END_TO_END: ClassVar[bool] = True  # with real texts, rows add tokenizer + model runs (e2e_p50_ms)

    def warmups(self, asked: int) -> int:
        """How many warm-up runs follow a shape's first run."""
        return asked

    def run_once(self, backend, model, prepared, job: dict) -> None:
        """One untimed run (the first one, the warm-ups)."""
        backend.run(prepared)

    def timed_runs(self, backend, model, prepared, runs: int, min_time: float, job: dict) -> dict:
        """At least ``runs`` timed runs and ``min_time`` seconds: ``samples_ms`` (one latency per
        run), and any other ``*_samples_ms`` the task's rows are computed from."""
        from hfmagic.worker import timed_runs

        return {"samples_ms": timed_runs(lambda: backend.run(prepared), runs, min_time)}

    def forward_outputs(self, backend, model, feed: dict) -> dict | None:
        """%evaluate's named outputs of one batch when the task computes them itself (None: the
        backend's outputs as they are)."""
        return None

    def row_figures(self, raw: dict, batch: int, seq: int) -> dict:
        """The task's own row figures from a worker's result (beside the latency percentiles)."""
        return {}

    # -- export --------------------------------------------------------------------------------
    def default_levels(self) -> tuple[str, ...]:
        return self.DEFAULT_LEVELS

    def variant_names(self) -> tuple[str, ...]:
        """Every variant export_onnx can build for this task (and torch)."""
        from hfmagic.export import VARIANT_NAMES

        return VARIANT_NAMES

    def default_variants(self) -> list[str]:
        """What %benchmark measures of a model when --variants is not given."""
        from hfmagic.export import DEFAULT_LEVELS

        return ["torch", *DEFAULT_LEVELS, "int8", *(f"{lv}-int8" for lv in DEFAULT_LEVELS if lv != "fp32")]

    def export_steps(self, levels: list[str], quantize: str, static: bool, options: dict) -> list:
        """The variants export_onnx builds (hfmagic.export.Step, in build order)."""
        from hfmagic.export import plan

        return plan(levels, quantize, static)

    def validator(self, model, texts: list[str], source: str):
        """What each built variant is compared with: ``compare(path, device)`` -> figures."""
        from hfmagic.validation import Reference

        return Reference(model, texts, source)

    def check_built(self, quant: str | None, path) -> str | None:
        """Why a built variant cannot be used although it was built (None: it can)."""
        return None

    def divergence_rule(self) -> str:
        """When a variant counts as diverged, in words (export's notes)."""
        from hfmagic.validation import COSINE_FLOOR

        floors = ", ".join(f"{v} ({k})" for k, v in COSINE_FLOOR.items())
        return f"a variant diverges below a worst-text cosine of {floors}"

    def divergence(self, variant_name: str, figures: dict) -> str | None:
        """Why a variant's validation figures say it diverged from PyTorch, or None."""
        from hfmagic.validation import divergence

        return divergence(variant_name, figures)

    # -- validation --------------------------------------------------------------------------
    def token_level(self, output: str) -> bool:
        """Whether an output has one value (or vector) per token (padding is left out of it)."""
        return False

    def decides(self, output: str) -> str | None:
        """What an output's argmax decides: "class" (per text), "token" (per token), "position"
        (an answer start/end per text), or None (embeddings: no decision)."""
        return None

    # -- evaluation --------------------------------------------------------------------------
    def evaluator(self):
        """The object %evaluate runs for this task, or raise UnsupportedError saying why."""
        from hfmagic.errors import UnsupportedError

        raise UnsupportedError(f"%evaluate has no evaluator for {self.NAME} models yet")

    def __repr__(self) -> str:
        return f"<task {self.NAME}>"


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def require_any(path: Path, names: tuple[str, ...], what: str, fix: str) -> None:
    """Refuse ``path`` unless it holds one of ``names`` (a tokenizer, an image processor, ...);
    ``what`` says what is missing (``tokenizer (no tokenizer.json, ...)``), ``fix`` how to mend it."""
    if not any((path / n).exists() for n in names):
        raise ModelSourceError(f"{path} has weights but no {what}; {fix}")


def inputs_note(names: list[str]) -> str:
    return ", ".join(names) if names else "(none)"



# -- evaluation: what a task's evaluator gives the %evaluate driver -------------------------------

class EvalData:
    """A task's evaluation examples, read once and shared by every variant.

    ``units`` is how many examples are scored and resampled by the bootstrap (texts, sentences,
    questions); ``fingerprint`` is sha256 of exactly what was read (rows, columns, source);
    ``params`` what the run store records so that a rerun reads the same (columns, label map)."""

    def __init__(self, examples, units: int, source: str, fingerprint: dict, notes=None,
                 caption: str | None = None, params: dict | None = None):
        self.examples, self.units, self.source, self.fingerprint = examples, units, source, fingerprint
        self.notes = list(notes or [])
        self.caption = caption
        self.params = dict(params or {})

    def __len__(self) -> int:
        return self.units


class Evaluator:
    """One task's part of %evaluate; the driver (hfmagic.evaluation) runs every task alike:

    1. ``metrics(names)``: the metrics asked for, checked before anything heavy (first one gated);
    2. ``read(model, data, options)`` -> :class:`EvalData`;
    3. ``batches(model, data, batch_size)`` -> ``[(units, feed)]``: which examples a batch holds
       (an index per model row: a long QA context gives several windows of one question) and its
       numpy inputs, built once and fed to every variant;
    4. per variant, ``outputs(named, feed)`` turns one batch's named outputs into one entry per
       model row, and ``finish(model, data, per_row)`` those into the variant's prediction;
    5. ``score(data, prediction, metrics)`` -> figures with bootstrap intervals (``m``, ``m_low``,
       ``m_high``); ``compare(data, reference, prediction)`` -> agreement figures and flip rows.
    """

    FLIP_COLUMNS: tuple[str, ...] = ("variant", "row")

    def __init__(self, task: Task):
        self.task = task

    def metrics(self, names, model) -> list:
        raise NotImplementedError

    def read(self, model, data, options: dict) -> EvalData:
        raise NotImplementedError

    def batches(self, model, data: EvalData, batch_size: int) -> list:
        raise NotImplementedError

    def outputs(self, named: dict, feed: dict) -> list:
        raise NotImplementedError

    def finish(self, model, data: EvalData, per_row: list):
        raise NotImplementedError

    def score(self, data: EvalData, prediction, metrics) -> dict:
        raise NotImplementedError

    def compare(self, data: EvalData, reference, prediction, variant: str) -> tuple[dict, list[dict]]:
        raise NotImplementedError

    def align(self, reference, reference_labels: dict, labels: dict):
        """The reference model's prediction in this model's terms (another model may number its
        classes differently), or a string saying why the two cannot be compared."""
        return reference

    def columns(self) -> list:
        """Extra table columns this task's figures add (``results.Column`` objects)."""
        return []
