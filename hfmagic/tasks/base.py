"""What a task is to hfmagic: everything that differs between text classification, NER, QA, ...

A task is one small class registered by name (:func:`hfmagic.tasks.register`). Export, validation,
the worker, benchmark, evaluate, the dashboard and the store ask the model's task instead of
branching on its name:

- what it loads: ``AUTO_CLASS`` (transformers), ``EXPORT_TASK`` (optimum's exporter), the files a
  folder needs beside its weights (``check_folder``), whether it predicts named classes
  (``LABELLED``);
- which saved models it takes: ``matches(config)`` (by architecture, then modality);
- the axes of a shape: batch x the task's ``SIZE_AXIS`` (text: tokens per sequence; images: pixels
  per side), what %benchmark sweeps by default (``default_sizes``) and which sizes a model takes
  (``check_sizes``); rows carry the axis under its own key (``seq_len``, ``image_size``);
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

from hfmagic.core.errors import ModelSourceError
from hfmagic.core.shapes import TEXT_AXIS, Axis
from hfmagic.core.timing import timed_runs


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

    def auto_class(self, model) -> str:
        """transformers' Auto class that loads ``model`` (a task may take several families)."""
        return self.AUTO_CLASS

    def exporter_task(self, model) -> str:
        """optimum's task name for ``model``'s export."""
        return self.export_task()

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
    SIZE_AXIS: ClassVar[Axis] = TEXT_AXIS
    EXAMPLES: ClassVar[str] = "texts"  # what its examples are called in messages and notes
    PREPROCESSOR: ClassVar[str] = "tokenizer"  # what makes the model's inputs from them (e2e_p50_ms times it too)

    def position_limit(self, model) -> int | None:
        return None

    def default_sizes(self, model) -> list[int]:
        """What %benchmark sweeps on the size axis when not told."""
        from hfmagic.core.config import settings

        return list(settings().seq_lens)

    def check_sizes(self, model, sizes: list[int], new_tokens: int = 0) -> None:
        """Refuse (one line) sizes the model cannot take (text: beyond its positions, a prompt with
        its new tokens included). By default every size is taken."""

    def new_tokens(self, asked, model) -> int | None:
        """Tokens generated per measured run (tasks that generate); others refuse --new-tokens."""
        if asked is not None:
            from hfmagic.core.errors import UsageProblem

            raise UsageProblem(f"--new-tokens is for text-generation models; this one is a {model.task} model")
        return None

    def shape(self, model, batch: int, size: int) -> dict:
        """What ``synthetic_inputs`` is given: the batch, the size under the axis's key (and what else
        the task needs to make inputs of it)."""
        return {"batch_size": batch, self.SIZE_AXIS.key: size}

    def memory_tokens(self, model, size: int) -> int:
        """The sequence length a shape of ``size`` amounts to in the memory estimate (tokens)."""
        return size

    def throughput(self, samples_per_s: float, size: int) -> dict:
        """What the row's throughput figures are beyond samples/s (text: tokens/s)."""
        return {"tokens_per_s": samples_per_s * size}

    ROW_KEYS: ClassVar[tuple[str, ...]] = ()  # the row figures this task adds (None on other tasks' rows)

    def benchmark_columns(self, columns: list) -> list:
        """The benchmark table's columns for this task (the shared ones, the size axis named)."""
        from hfmagic.core.records import field_of

        return [field_of(self.SIZE_AXIS.key).column() if c.key == "seq_len" else c for c in columns]

    # -- inputs ------------------------------------------------------------------------------
    def preprocessor(self, model):
        """The object that makes the model's inputs from examples (text: its tokenizer)."""
        return model.tokenizer()

    def model_inputs(self, model, forward=None) -> list[str]:
        raise NotImplementedError

    def feed(self, model, encoded: dict, names: list[str] | None = None) -> dict:
        """What a tokenizer or processor made of some examples, as exactly the inputs a run takes:
        ``names`` (an ONNX graph's, a backend's), or by default the model's own (``model_inputs``).
        Every place that feeds encoded examples to a model goes through here: a tokenizer may make
        more than the model takes (token_type_ids from a decoder's plain PreTrainedTokenizerFast,
        which generate() refuses and its graph lacks), and a graph may need what it did not make."""
        return self.complete_inputs(self.model_inputs(model) if names is None else names, encoded)

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
        return {"samples_ms": timed_runs(lambda: backend.run(prepared), runs, min_time)}

    def forward_outputs(self, backend, model, feed: dict) -> dict | None:
        """%evaluate's named outputs of one batch when the task computes them itself (None: the
        backend's outputs as they are)."""
        return None

    def row_figures(self, raw: dict, batch: int, seq: int) -> dict:
        """The task's own row figures from a worker's result (beside the latency percentiles)."""
        return {}

    # -- export --------------------------------------------------------------------------------
    def quant_operators(self, model) -> tuple[str, ...] | None:
        """The operators dynamic int8 quantizes for ``model`` (None: optimum's default for the ISA)."""
        return self.QUANT_OPERATORS

    def default_levels(self, model=None) -> tuple[str, ...]:
        """What export_onnx builds when not told (``model``: the one exported, when it matters)."""
        return self.DEFAULT_LEVELS

    def variant_names(self) -> tuple[str, ...]:
        """Every variant export_onnx can build for this task (and torch)."""
        from hfmagic.onnx.plan import VARIANT_NAMES

        return VARIANT_NAMES

    def default_variants(self, model=None) -> list[str]:
        """What %benchmark measures of a model when --variants is not given: torch, the default
        levels and their dynamic int8 twins."""
        levels = self.default_levels(model)
        return ["torch", *levels, "int8", *(f"{lv}-int8" for lv in levels if lv != "fp32")]

    def export_steps(self, levels: list[str], quantize: str, static: bool, options: dict) -> list:
        """The variants export_onnx builds (hfmagic.onnx.plan.Step, in build order)."""
        from hfmagic.onnx.plan import plan

        return plan(levels, quantize, static)

    def step_file(self, step, model) -> str:
        """The graph a built step's runtime is pointed at (its folder may hold more: graph_files)."""
        return step.file

    def ort_generator(self, variant, options, providers):
        """What onnxruntime runs ``generate()`` on for this variant (a decoder's ORTModelForCausalLM,
        a Whisper's ORTModelForSpeechSeq2Seq), with the session its providers are read from; None
        for a model measured one forward pass at a time."""
        return None

    def build_step(self, model, step, out, source, options: dict) -> str | None:
        """Build a step only this task knows into ``out`` and return its command line; None for the
        shared steps (fp32 export, ORTOptimizer levels, dynamic and static int8)."""
        return None

    def validation_examples(self, model, data) -> tuple[list, str]:
        """The real examples each built variant is compared with PyTorch on, and where they are
        from: the first of the calibration data, of the model's own held-out split, or built-in ones."""
        from hfmagic.onnx.validation import DEFAULT_TEXTS

        if data is not None:
            return data.texts[:8], f"the first texts of {data.source}"
        if model.dataset is not None and "text" in getattr(model.dataset, "columns", ()):
            return list(model.dataset["text"][:8]), "the model's own held-out texts"
        return DEFAULT_TEXTS, "hfmagic's sample sentences"

    def read_inputs(self, model, source):
        """%benchmark --inputs: the real examples each shape is cut from, timed end to end."""
        from hfmagic.data.tables import load_data

        return load_data(source, require_labels=False)

    def inputs_payload(self, data, limit: int):
        """What a worker process is sent of ``data`` (JSON): the texts themselves; image and audio
        tasks write their examples to a file in the cache and send its path."""
        return data.texts[:limit]

    def inputs_from_payload(self, payload):
        """A worker's examples from what ``inputs_payload`` sent (None: synthetic inputs only)."""
        return payload

    def inputs_note(self, data) -> str:
        return f"inputs: {len(data)} real texts from {data.source}, tokenized (padded/truncated) to each shape"

    def e2e_note(self) -> str:
        """What e2e_p50_ms is, beside p50_ms, wherever it is shown."""
        return (f"e2e p50 ms: the {self.PREPROCESSOR} and the model, per run, on the real {self.EXAMPLES}; p50 ms "
                f"is the model alone, so e2e is the larger by about what the {self.PREPROCESSOR} costs")

    def read_calibration(self, model, calibration, samples: int, column: str | None):
        """Static int8's calibration examples (``.source``, ``.fingerprint``, ``len()``)."""
        from hfmagic.data.tables import load_data

        return load_data(calibration, text_column=column, limit=samples, require_labels=False)

    def calibration_features(self, model, data) -> dict:
        """The calibration examples as the graph's numpy inputs."""
        from hfmagic.onnx.build import tokenize

        return self.feed(model, dict(tokenize(model, data.texts, "np")))

    def encode_examples(self, model, examples: list) -> dict:
        """Real examples as numpy inputs for validation (text: tokenized, padded to the longest)."""
        from hfmagic.onnx.build import tokenize

        return dict(tokenize(model, examples, "np"))

    def validator(self, model, texts: list[str], source: str):
        """What each built variant is compared with: ``compare(path, device)`` -> figures."""
        from hfmagic.onnx.validation import Reference

        return Reference(model, texts, source)

    def check_built(self, quant: str | None, path) -> str | None:
        """Why a built variant cannot be used although it was built (None: it can)."""
        return None

    def divergence_rule(self) -> str:
        """When a variant counts as diverged, in words (export's notes)."""
        from hfmagic.onnx.validation import COSINE_FLOOR

        floors = ", ".join(f"{v} ({k})" for k, v in COSINE_FLOOR.items())
        return f"a variant diverges below a worst-{self.EXAMPLES.rstrip('s')} cosine of {floors}"

    def divergence(self, variant_name: str, figures: dict) -> str | None:
        """Why a variant's validation figures say it diverged from PyTorch, or None."""
        from hfmagic.onnx.validation import divergence

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
        from hfmagic.core.errors import UnsupportedError

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


def write_examples(arrays: list, sha256: str) -> dict:
    """Examples that are arrays (images, waveforms) in one .npz file of the cache, named by their
    data's fingerprint (written once): what a worker process is sent instead of the arrays."""
    import numpy as np

    from hfmagic.core.config import settings

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
