"""The four parts a task is made of beside what it is (:class:`hfmagic.tasks.base.Task`): its inputs,
how one measurement runs, its export recipe and its validation. A task holds one of each
(``task.inputs``, ``task.measurement``, ``task.export``, ``task.validation``), made from the
classes it names (``Inputs = TokenInputs``), and every layer asks the part it needs:
``model.task_plugin.inputs.synthetic(...)``, ``model.task_plugin.export.steps(...)``.

A default here either holds for any modality (measure one forward pass per run, build what optimum
exports, compare outputs by cosine) or is absent: it raises one line naming the task and the part
to write (a task of images that writes no ``Inputs.synthetic`` is told so, never handed a
tokenizer). Shared implementations live beside: tokenized text in :mod:`hfmagic.tasks.tokens`
(text and text generation), arrays of examples sent to workers in :mod:`hfmagic.tasks.base`.

Nothing here imports a heavy library at module level.
"""

from __future__ import annotations

from typing import ClassVar

from hfmagic.core.errors import UnsupportedError, UsageProblem
from hfmagic.core.records import field_of
from hfmagic.core.shapes import Axis
from hfmagic.core.timing import timed_runs
from hfmagic.onnx.plan import VARIANT_NAMES, plan
from hfmagic.onnx.validation import COSINE_FLOOR, Reference, divergence


class Part:
    """One part of a task, made by the task with itself (``self.task``: its name for messages and
    its other parts)."""

    def __init__(self, task):
        self.task = task  # the hfmagic.tasks.base.Task that holds this part

    def _missing(self, what: str, hook: str) -> UnsupportedError:
        """The one line a hook raises where no default holds for every task (the task must say)."""
        protocol = next(c for c in type(self).__mro__ if Part in c.__bases__).__name__
        return UnsupportedError(f"the {self.task.NAME} task does not say {what}; write its {protocol}.{hook} "
                                "(see hfmagic.tasks.protocols)")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.task.NAME}>"


class Inputs(Part):
    """What the model reads and the shape's size axis: how many of what, synthetic or real.

    A shape is batch x ``AXIS`` (tokens per sequence, pixels per side, seconds of audio). Real
    examples are ``read`` (``--inputs``, calibration data), turned into the model's inputs by its
    preprocessor (``encode``: padded to the longest, or to exactly one size), and ``feed`` gives a
    run exactly the inputs it takes."""

    AXIS: ClassVar[Axis]                        # a shape's second axis (hfmagic.core.shapes)
    EXAMPLES: ClassVar[str] = "examples"        # what its examples are called in messages and notes
    PREPROCESSOR: ClassVar[str] = "preprocessor"  # what makes inputs of them (e2e_p50_ms times it too)

    def preprocessor(self, model):
        """The object that makes the model's inputs from examples (the handle caches it): by default
        the processor saved beside the weights (transformers' AutoProcessor: a tokenizer, an image
        processor or a speech processor, whichever the folder holds)."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(model.path, trust_remote_code=model.trust_remote_code)

    def sizes(self, model) -> list[int]:
        """What %benchmark sweeps on the size axis when not told (no default for every task: it asks)."""
        raise UsageProblem(f"{model.name} is a {self.task.NAME} model, which has no default {self.AXIS.noun}; "
                           f"pass {self.AXIS.flag}")

    def check_sizes(self, model, sizes: list[int], new_tokens: int = 0) -> None:
        """Refuse (one line) sizes the model cannot take (text: beyond its positions, a prompt with
        its new tokens included). By default every size is taken."""

    def shape(self, model, batch: int, size: int) -> dict:
        """What ``synthetic`` is given: the batch, the size under the axis's key (and what else the
        task needs to make inputs of it: a sampling rate)."""
        return {"batch_size": batch, self.AXIS.key: size}

    def memory_tokens(self, model, size: int) -> int:
        """The sequence length a shape of ``size`` amounts to in the memory estimate: by default one
        position per unit of size (an image model counts its patches, a speech model its frames)."""
        return size

    def model_inputs(self, model, forward=None) -> list[str]:
        """The names of the inputs the model takes (``forward``: the PyTorch model's, to reconcile
        what the preprocessor makes with what it accepts)."""
        raise self._missing("which inputs its models take", "model_inputs")

    def synthetic(self, names: list[str], shape: dict, config: dict) -> dict:
        """Numpy inputs ``names`` of exactly ``shape`` (``shape()``'s), with the dtypes the exported
        graph declares, made up for timing."""
        raise self._missing("how to make up inputs of a shape", "synthetic")

    def encode(self, model, examples: list, size: int | None = None) -> dict:
        """Real examples as numpy inputs through the model's preprocessor: padded to the longest
        (``size`` None: validation, calibration, evaluation) or to exactly ``size`` (a shape)."""
        raise self._missing(f"how its {self.EXAMPLES} become inputs", "encode")

    def chat_note(self, model, sizes: list[int]) -> str:
        """``--chat-template`` checked before anything runs (the template there, room left in every
        size): the note that says what the prompts are. Only decoders have chat templates."""
        raise UsageProblem(f"--chat-template formats the prompts of text-generation models; {model.name} is a "
                           f"{model.task} model")

    def chat(self, model, batch: int, seq: int, examples: list | None) -> dict:
        """Prompts of exactly (batch, seq) as a user's turn in the model's chat template: real
        examples or made-up content (``chat_note`` accepted the model)."""
        return self.chat_note(model, [seq])

    def complete(self, names: list[str], encoded: dict) -> dict:
        """What ``encode`` made, as exactly the inputs ``names``: by default each one as made (a
        task whose graph takes inputs its preprocessor does not make fills them in: positions)."""
        missing = [n for n in names if n not in encoded]
        if missing:
            raise UnsupportedError(f"the model takes {', '.join(missing)}, which the {self.task.NAME} task's "
                                   f"{self.PREPROCESSOR} did not make (it made {', '.join(encoded) or 'nothing'})")
        return {n: encoded[n] for n in names}

    def feed(self, model, encoded: dict, names: list[str] | None = None) -> dict:
        """What the preprocessor made, as exactly the inputs a run takes: ``names`` (an ONNX graph's,
        a backend's), or by default the model's own (``model_inputs``). Every place that feeds
        encoded examples to a model goes through here (not a hook: ``complete`` is)."""
        return self.complete(self.model_inputs(model) if names is None else names, encoded)

    def read(self, model, source, column: str | None = None, limit: int | None = None):
        """Real examples from ``source`` (``--inputs``, ``--calibration``): an object with
        ``.source``, ``.fingerprint`` (its ``sha256``) and ``len()``; ``column`` the one to read."""
        raise self._missing(f"how to read its {self.EXAMPLES}", "read")

    def examples(self, data) -> list | None:
        """The examples of what ``read`` gave (or of a model's own held-out split; None if it has none
        of this kind)."""
        raise self._missing(f"where its {self.EXAMPLES} are in what it reads", "examples")

    def samples(self, model, count: int) -> tuple[list, str]:
        """``count`` examples of its own and where they are from: what export validates variants on
        when no data came with the call and the model has no held-out split."""
        raise UnsupportedError(f"the {self.task.NAME} task has no sample {self.EXAMPLES} to validate {model.name}'s "
                               f"variants on; pass --calibration DATA (its first {self.EXAMPLES} are used)")

    def payload(self, data, limit: int):
        """What a worker process is sent of ``data`` (JSON): by default the examples themselves;
        arrays (images, waveforms) go to a file in the cache instead (:func:`~hfmagic.tasks.base.write_examples`)."""
        return list(self.examples(data))[:limit]

    def from_payload(self, payload):
        """A worker's examples from what ``payload`` sent (None: synthetic inputs only)."""
        return payload

    def note(self, data) -> str:
        """What %benchmark's notes say of ``--inputs``."""
        return (f"inputs: {len(data)} real {self.EXAMPLES} from {data.source}, made to each shape by the model's "
                f"{self.PREPROCESSOR}")


class Measurement(Part):
    """How one measurement runs: by default one forward pass per run, timed alone (every backend's
    ``run``), with warm-ups; a task that generates times a whole generation instead and adds its
    own figures to the row."""

    GENERATES: ClassVar[bool] = False  # a run is a generation (decoder LLMs): --new-tokens, TPOT
    END_TO_END: ClassVar[bool] = True  # with real examples, rows add preprocessor + model runs (e2e_p50_ms)
    ROW_KEYS: ClassVar[tuple[str, ...]] = ()  # the row figures this task adds (None on other tasks' rows)

    def new_tokens(self, asked, model) -> int | None:
        """Tokens generated per measured run (tasks that generate); others refuse --new-tokens."""
        if asked is not None:
            raise UsageProblem(f"--new-tokens is for text-generation models; this one is a {model.task} model")
        return None

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

    def throughput(self, samples_per_s: float, size: int) -> dict:
        """The row's throughput figures beyond samples/s (text: tokens/s; by default none)."""
        return {}

    def row_figures(self, raw: dict, batch: int, size: int) -> dict:
        """The task's own row figures from a worker's result (beside the latency percentiles)."""
        return {}

    def columns(self, columns: list) -> list:
        """The benchmark table's columns for this task: the shared ones with the size axis named;
        tokens/s only where the task's throughput gives it."""

        named = [field_of(self.task.inputs.AXIS.key).column() if c.key == "seq_len" else c for c in columns]
        return [c for c in named if c.key != "tokens_per_s" or "tokens_per_s" in self.throughput(1.0, 1)]

    def e2e_note(self) -> str:
        """What e2e_p50_ms is, beside p50_ms, wherever it is shown."""
        inputs = self.task.inputs
        return (f"e2e p50 ms: the {inputs.PREPROCESSOR} and the model, per run, on the real {inputs.EXAMPLES}; p50 ms "
                f"is the model alone, so e2e is the larger by about what the {inputs.PREPROCESSOR} costs")

    def ort_generator(self, variant, options, providers):
        """What onnxruntime runs ``generate()`` on for this variant (a decoder's ORTModelForCausalLM,
        a Whisper's ORTModelForSpeechSeq2Seq), with the session its providers are read from; None
        for a model measured one forward pass at a time."""
        return None


class Export(Part):
    """The export recipe: which variants export_onnx builds, in which steps, and how. By default
    optimum's export (fp32) and onnxruntime's dynamic and static int8 of it; ORTOptimizer's levels
    (O1-O4) only where a task knows optimum fuses its architectures (``LEVELS``)."""

    LEVELS: ClassVar[tuple[str, ...]] = ("fp32",)          # what --levels takes
    DEFAULT_LEVELS: ClassVar[tuple[str, ...]] = ("fp32",)  # what export_onnx builds when not told
    QUANT_OPERATORS: ClassVar[tuple[str, ...] | None] = None  # dynamic int8's operators (None: optimum's)
    # dynamic int8 built by the shared step, so its weight type and reduce_range can be chosen (a task
    # that quantizes in a step of its own keeps the CPU's preset)
    DYNAMIC_OPTIONS: ClassVar[bool] = True

    def quant_operators(self, model) -> tuple[str, ...] | None:
        """The operators dynamic int8 quantizes for ``model`` (None: optimum's default for the ISA)."""
        return self.QUANT_OPERATORS

    def default_levels(self, model=None) -> tuple[str, ...]:
        """What export_onnx builds when not told (``model``: the one exported, when it matters)."""
        return self.DEFAULT_LEVELS

    def variant_names(self, model=None) -> tuple[str, ...]:
        """Every variant export_onnx can build (and torch): the names --variants takes."""

        return VARIANT_NAMES

    def default_variants(self, model=None) -> list[str]:
        """What %benchmark measures of a model when --variants is not given: torch, the default
        levels and their dynamic int8 twins."""
        levels = self.default_levels(model)
        return ["torch", *levels, "int8", *(f"{lv}-int8" for lv in levels if lv != "fp32")]

    def steps(self, levels: list[str], quantize: str, static: bool, options: dict) -> list:
        """The variants export_onnx builds (hfmagic.onnx.plan.Step, in build order); ``options``
        holds the model exported (``model``), int4's ``block_size`` and dynamic int8's settings
        (``dynamic``: a :class:`hfmagic.onnx.plan.Dynamic`, None for the CPU's preset)."""

        return plan(levels, quantize, static, options.get("dynamic"))

    def step_file(self, step, model) -> str:
        """The graph a built step's runtime is pointed at (its folder may hold more: graph_files)."""
        return step.file

    def build_step(self, model, step, out, source, options: dict) -> str | None:
        """Build a step only this task knows into ``out`` and return its command line; None for the
        shared steps (fp32 export, ORTOptimizer levels, dynamic and static int8)."""
        return None

    def quantization(self, step, options: dict, path=None) -> str | None:
        """What a step only this task builds quantized, in words (``""``: nothing); None for the shared
        steps, which :func:`hfmagic.onnx.build.describe_quantization` describes. ``options``: int4's
        ``block_size`` and ``int4_method``, int8's ``isa`` and ``per_channel``; ``path``: the built
        file, once there is one."""
        return None

    def calibration(self, model, source, samples: int, column: str | None):
        """Static int8's calibration examples: the task's own reader (``Inputs.read``), first ``samples``."""
        return self.task.inputs.read(model, source, column, samples)

    def calibration_features(self, model, data) -> dict:
        """The calibration examples as the graph's numpy inputs."""
        inputs = self.task.inputs
        return inputs.feed(model, inputs.encode(model, list(inputs.examples(data))))

    def check_built(self, quant: str | None, path) -> str | None:
        """Why a built variant cannot be used although it was built (None: it can)."""
        return None


class Validation(Part):
    """Each built variant next to PyTorch on a few real examples: which examples, what is compared
    (by default every shared output: worst-example cosine, max |diff|, decisions' agreement), and
    when a variant counts as diverged."""

    SAMPLES: ClassVar[int] = 8  # examples each variant is validated on

    def examples(self, model, data) -> tuple[list, str]:
        """The examples and where they are from: the first of the calibration data, of the model's
        own held-out split, or the task's samples (``Inputs.samples``)."""
        inputs = self.task.inputs
        if data is not None:
            return list(inputs.examples(data))[:self.SAMPLES], f"the first {inputs.EXAMPLES} of {data.source}"
        own = inputs.examples(model.dataset) if model.dataset is not None else None
        if own is not None:
            return list(own)[:self.SAMPLES], f"the model's own held-out {inputs.EXAMPLES}"
        return inputs.samples(model, self.SAMPLES)

    def reference(self, model, examples: list, source: str):
        """What each built variant is compared with: ``compare(path, device)`` -> figures."""

        return Reference(model, examples, source)

    def rule(self) -> str:
        """When a variant counts as diverged, in words (export's notes)."""

        floors = ", ".join(f"{v} ({k})" for k, v in COSINE_FLOOR.items())
        return f"a variant diverges below a worst-{self.task.inputs.EXAMPLES.rstrip('s')} cosine of {floors}"

    def divergence(self, variant_name: str, figures: dict) -> str | None:
        """Why a variant's validation figures say it diverged from PyTorch, or None."""

        return divergence(variant_name, figures)

    def token_level(self, output: str) -> bool:
        """Whether an output has one value (or vector) per token (padding is left out of it)."""
        return False

    def decides(self, output: str) -> str | None:
        """What an output's argmax decides: "class" (per example), "token" (per token), "position"
        (an answer start/end per text), or None (embeddings: no decision)."""
        return None
