"""What a task is to hfmagic: everything that differs between text classification, NER, QA, ...

A task is one small class registered by name (:func:`hfmagic.tasks.register`). Export, validation,
the worker, benchmark, evaluate, the dashboard and the store ask the model's task instead of
branching on its name. The class says what the task is and how its models load (below); four
parts it holds say the rest (:mod:`hfmagic.tasks.protocols`):

- ``task.inputs`` (:class:`~hfmagic.tasks.protocols.Inputs`): what its models read and the size
  axis of a shape (tokens, pixels, seconds), synthetic and real inputs, what a worker is sent;
- ``task.measurement`` (:class:`~hfmagic.tasks.protocols.Measurement`): how one run is timed
  (a forward pass, or a whole generation) and the figures a row adds;
- ``task.export`` (:class:`~hfmagic.tasks.protocols.Export`): which variants export_onnx builds,
  in which steps, calibrated on what;
- ``task.validation`` (:class:`~hfmagic.tasks.protocols.Validation`): which examples each variant
  is compared with PyTorch on, what is compared, when it diverged;
- ``task.requests`` (:class:`Requests`): what a served model (%serve) takes in one HTTP request and
  answers, through the evaluator's own prediction path;
- and ``evaluator()``: what %evaluate does with it (:class:`Evaluator`), or why it has none.

A task may also bring what only its models need (``KINDS``: a model that is not a transformers
one, the TF-IDF baseline; ``SOURCES``: models known by name, ``demo``; ``FORMATS``: files that
become models, GGUF; ``BACKENDS``: runtimes, onnxruntime-genai): :mod:`hfmagic.tasks.kinds`.

Nothing here imports a heavy library at module level.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from hfmagic.core.config import settings
from hfmagic.core.errors import ModelSourceError, UnsupportedError, UsageProblem
from hfmagic.tasks.protocols import Export, Inputs, Measurement, Part, Validation


LOAD_SAMPLES = 32  # a load test's default examples: this many of the task's samples
STREAM_TYPE = "application/x-ndjson"  # a streamed answer: a JSON line per part as it is made (a decoder's tokens)


class Requests(Part):
    """What a served model takes and answers (:mod:`hfmagic.serving`): one request's example as JSON
    (``SHAPE``, in words), decoded (``example``), a batch of them made into the evaluator's own
    data (``data``), run through the same ``batches``/``outputs``/``finish`` as %evaluate (so an
    answer is exactly the prediction %evaluate scores) and turned into JSON (``answers``); and what
    %loadtest sends of data read for the task (``payloads``). ``SHAPE`` None: not served (yet)."""

    SHAPE: ClassVar[str | None] = None   # one request's "inputs", in words: '"a text"'
    FILES: ClassVar[tuple[str, ...]] = ()  # content types a request body may be, one example as a file
    STREAMS: ClassVar[bool] = False  # answers streamed as generated (a decoder's tokens: generation/requests.py)

    def check(self, model) -> None:
        """Refuse, in one line, a model this task cannot serve."""
        if self.SHAPE is None:
            raise UnsupportedError(f"%serve does not answer {self.task.NAME} models yet (their %benchmark and "
                                   "%evaluate work)")

    def example(self, model, value):
        """One request's example from its JSON value (or a file's bytes); bad ones raise UsageProblem."""
        raise self._missing("what one request holds", "example")

    def data(self, model, examples: list) -> "EvalData":
        """The examples of one batch as the evaluator's data (no labels)."""
        raise self._missing("how requests become the evaluator's data", "data")

    def answers(self, model, data: "EvalData", prediction) -> list[dict]:
        """Each example's answer (JSON) from the evaluator's prediction."""
        raise self._missing("what an answer holds", "answers")

    def payloads(self, model, data: "EvalData") -> list:
        """What %loadtest sends of data read by the evaluator: each example's JSON value."""
        raise self._missing("what a load test sends", "payloads")

    def sent(self, model, data=None) -> tuple[list, str]:
        """What %loadtest sends ``model`` (each example's JSON value) and where it is from: ``data``
        read as %evaluate reads it, or by default the task's sample examples (``Inputs.samples``)."""
        if data is not None:
            read = self.task.evaluator().read(model, data, {})
            return self.payloads(model, read), read.source
        examples, source = self.task.inputs.samples(model, LOAD_SAMPLES)
        return self.payloads(model, self.data(model, examples)), source

    def predict(self, model, runner, examples: list) -> list[dict]:
        """One batch of decoded examples run as %evaluate runs them, one answer each."""
        evaluator = self.task.evaluator()
        data = self.data(model, examples)
        batches = evaluator.batches(model, data, 1 << 20)  # one batch (a QA context: all its windows)
        per_row: list = [None] * sum(len(idx) for idx, _ in batches)
        for idx, feed in batches:
            named = runner.run(feed)
            for j, output in zip(idx, evaluator.outputs(named, feed)):
                per_row[int(j)] = output
        return self.answers(model, data, evaluator.finish(model, data, per_row))


class Task:
    """What a task is and how its models load, and the parts it is made of (see the module docstring).

    Required: ``NAME``, ``MODALITY``, ``AUTO_CLASS`` and an ``Inputs`` class with an ``AXIS``
    (:func:`hfmagic.tasks.register` checks them). The default parts hold for any modality or say,
    in one line, which hook a task must write."""

    NAME: ClassVar[str]
    MODALITY: ClassVar[str]                     # "text", "image", "audio": what its models read
    AUTO_CLASS: ClassVar[str]                   # transformers' Auto class that loads it
    EXPORT_TASK: ClassVar[str | None] = None    # optimum's task name (default: NAME)
    ARCHITECTURES: ClassVar[tuple[str, ...]] = ()  # architecture-name suffixes it is saved as
    LABELLED: ClassVar[bool] = False            # predicts the classes the config's id2label names
    DEFAULT_METRICS: ClassVar[tuple[str, ...]] = ()
    CLASSICAL_BASELINE: ClassVar[str | None] = None  # why there is none, or its %load_model name
    DESCRIPTION: ClassVar[str] = ""
    FALLBACK: ClassVar[bool] = False            # tried after every other task (bare encoders)

    # the parts, made once per task object: task.inputs, task.measurement, task.export, task.validation
    Inputs: ClassVar[type[Inputs]] = Inputs
    Measurement: ClassVar[type[Measurement]] = Measurement
    Export: ClassVar[type[Export]] = Export
    Validation: ClassVar[type[Validation]] = Validation
    Requests: ClassVar[type[Requests]] = Requests

    # what the task brings beside itself (hfmagic.tasks.kinds; Backend classes: hfmagic.core.backend)
    KINDS: ClassVar[tuple] = ()
    SOURCES: ClassVar[tuple] = ()
    FORMATS: ClassVar[tuple] = ()
    BACKENDS: ClassVar[tuple] = ()

    def __init__(self) -> None:
        self.inputs = self.Inputs(self)
        self.measurement = self.Measurement(self)
        self.export = self.Export(self)
        self.validation = self.Validation(self)
        self.requests = self.Requests(self)

    # -- which models, and how they load ------------------------------------------------------
    @classmethod
    def matches(cls, config: dict) -> bool:
        """Whether a saved config's architecture is one this task loads."""
        return any(a.endswith(cls.ARCHITECTURES) for a in config.get("architectures") or []) \
            and cls.fits_modality(config)

    @classmethod
    def serves(cls, config: dict) -> bool:
        """Whether ``--task`` may load a saved model of this architecture for this task with trained
        weights throughout: its own head (``matches``); a task that drops heads serves more."""
        return cls.matches(config)

    @classmethod
    def fits_modality(cls, config: dict) -> bool:
        """Whether a saved config is a model of this task's modality (by default, any is)."""
        return True

    def auto_class(self, model) -> str:
        """transformers' Auto class that loads ``model`` (a task may take several families)."""
        return self.AUTO_CLASS

    def exporter_task(self, model) -> str:
        """optimum's task name for ``model``'s export."""
        return self.EXPORT_TASK or self.NAME

    def check_folder(self, path: Path) -> None:
        """Refuse a folder that lacks what this task needs beside the weights (one line): a
        tokenizer, an image processor. By default nothing more is needed."""

    def card_lines(self, model) -> list[tuple[str, str]]:
        """What the model card adds for this task (read off the config)."""
        return []

    def labels(self, config: dict) -> dict[int, str]:
        """The classes it predicts (id -> name), from the config's id2label when ``LABELLED``."""
        if not self.LABELLED:
            return {}
        return {int(k): v for k, v in (config.get("id2label") or {}).items()}

    # -- evaluation --------------------------------------------------------------------------
    def evaluator(self):
        """The object %evaluate runs for this task, or raise UnsupportedError saying why."""

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


def file_bytes(value, what: str) -> bytes:
    """A request's file: its bytes as sent (the body), or in base64 (a ``data:`` URI too); else
    UsageProblem saying how to send ``what`` (``"an image ... e.g. {"inputs": "iVBORw0..."}"``)."""
    import base64
    import binascii

    raw = value
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value.split(",", 1)[1] if value.startswith("data:") else value, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if not isinstance(raw, (bytes, bytearray)) or not raw:
        raise UsageProblem(f"send {what} as a file's bytes in base64, or POST the file itself as the body")
    return bytes(raw)


def write_examples(arrays: list, sha256: str) -> dict:
    """Examples that are arrays (images, waveforms) in one .npz file of the cache, named by their
    data's fingerprint (written once): what a worker process is sent instead of the arrays."""
    import numpy as np

    folder = settings().cache_path / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sha256[:24]}-{len(arrays)}.npz"
    if not path.exists():
        partial = path.with_suffix(".part.npz")
        np.savez(partial, **{str(i): np.asarray(a) for i, a in enumerate(arrays)})
        partial.replace(path)
    return {"file": str(path), "count": len(arrays)}


def read_examples(payload: dict) -> list:
    import numpy as np

    with np.load(payload["file"]) as saved:
        return [saved[str(i)] for i in range(payload["count"])]


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
    """One task's part of %evaluate; the driver (hfmagic.evaluation.api) runs every task alike:

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
    # how batches() pads: what a batch-dependent variant (dynamic int8) sees beside each example
    PADDING = "each batch padded to its own longest example"

    def __init__(self, task: Task):
        self.task = task

    def padding(self, model) -> str:
        """How ``batches`` pads ``model``'s inputs, in words (each row and the notes say it)."""
        return self.PADDING

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

    def reference_notes(self, data: EvalData, row: dict) -> list[str]:
        """What the reference's own figures say about every row (a WER near 100%: an untrained model)."""
        return []

    def align(self, reference, reference_labels: dict, labels: dict):
        """The reference model's prediction in this model's terms (another model may number its
        classes differently), or a string saying why the two cannot be compared."""
        return reference

    def columns(self) -> list:
        """Extra table columns this task's figures add (``results.Column`` objects)."""
        return []
