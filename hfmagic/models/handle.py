"""Loading a Hugging Face model: a local folder, a hub id, an object in memory, or ``demo``.

:func:`load_model` returns a :class:`ModelHandle`: a light description read from the folder's
config and weight headers (no torch import), with the PyTorch model and tokenizer loaded on
first use. Everything later (export, benchmark, evaluate) starts from a handle's folder. Where a
folder comes from is :mod:`hfmagic.models.sources`; what its files are and what runs them, its
kind (:mod:`hfmagic.models.kinds`: transformers', or one a task brings, the TF-IDF baseline).
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from hfmagic import tasks
from hfmagic.core.errors import ModelSourceError, UnsupportedError, UsageProblem
from hfmagic.core.results import human_bytes, key_value_table
from hfmagic.models import sources
from hfmagic.models.kinds import WEIGHT_FILES, kind_of  # noqa: F401 (WEIGHT_FILES: what a folder's weights are named)
from hfmagic.models.sources import BUILT_IN_MODELS  # noqa: F401 (the models known by name with a held-out split)
from hfmagic.tasks import get_task, names, serving
from hfmagic.tasks.base import read_json


def check_task(task: str, config: dict | None = None, where: str = "this model") -> str:
    """A registered task's name (aliases resolved); with a config, one its architecture serves
    (:func:`task_problem` says why not, in one line)."""
    plugin = get_task(task)
    if config is not None and (problem := task_problem(plugin.NAME, config, where)):
        raise UnsupportedError(problem)
    return plugin.NAME


def task_problem(task: str, config: dict, where: str = "this model") -> str | None:
    """Why ``task`` cannot load a model saved with ``config``, or None.

    A task serves an architecture saved with its own head (``matches``: a classifier for
    text-classification), and feature-extraction serves any text model (AutoModel keeps the base and
    drops the head). Any other ``--task`` would load a head the weights do not hold, initialised at
    random (a BERT classifier as text-generation), and every later step would fail or mislead. An
    architecture no task recognises (``BertForMaskedLM``, a custom one) takes the user's word, as a
    config naming none does."""
    plugin = get_task(task)
    archs = ", ".join(config.get("architectures") or []) or config.get("model_type", "?")
    if not plugin.fits_modality(config):
        return (f"{where} ({archs}) is not a {plugin.MODALITY} model, so the {plugin.NAME} task cannot load it; "
                "leave --task out to have hfmagic say what it is")
    known = config.get("architectures") and any(get_task(n).matches(config) for n in names())
    if known and not plugin.serves(config):
        return (f"{where} is a {archs}, which serves {' and '.join(serving(config))}, not {plugin.NAME} (its "
                f"weights hold no {plugin.NAME} head); leave --task out, or pass one of those")
    return None


def infer_task(config: dict, where: str = "this model") -> str:
    """The task plugin a config's architecture was saved for (hfmagic.tasks), or one line saying
    that none is (bare text encoders are feature-extraction)."""
    return tasks.infer_task(config, where)


@dataclass
class ModelHandle:
    """A loaded model: where it lives, what it is, and its PyTorch objects on demand."""

    path: Path
    task: str
    source: str
    revision: str | None = None
    trust_remote_code: bool = False
    name: str = "model"
    dataset: Any = None  # the held-out split that came with it (the demo's), or None
    _torch_model: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _preprocessor: Any = field(default=None, repr=False)
    _stamp: tuple | None = field(default=None, repr=False, compare=False)  # the weights' files at load (stamp())

    # -- what it is (no heavy imports) -------------------------------------------------------
    @cached_property
    def config(self) -> dict:
        return json.loads((self.path / "config.json").read_text())

    @cached_property
    def preprocessor_config(self) -> dict:
        """The image processor's or feature extractor's saved settings ({} for text models)."""
        return read_json(self.path / "preprocessor_config.json")

    @property
    def model_type(self) -> str:
        return self.config.get("model_type", "?")

    @property
    def architecture(self) -> str:
        archs = self.config.get("architectures") or [self.model_type]
        return archs[0]

    @property
    def kind(self):
        """What it is made of and what runs it (:mod:`hfmagic.models.kinds`): a transformers model,
        or a kind a task brings (the TF-IDF baseline: one way to run, texts read end to end)."""
        return kind_of(self.config)

    @property
    def framework(self) -> str:
        """What runs it, by name: "transformers", or "sklearn" for a classical baseline (``%load_model tfidf``)."""
        return self.kind.NAME

    @property
    def task_plugin(self):
        """The task's plugin (hfmagic.tasks): what every step asks about inputs, shapes, outputs."""
        return get_task(self.task)

    @property
    def labels(self) -> dict[int, str]:
        return self.task_plugin.labels(self.config)

    @property
    def max_positions(self) -> int | None:
        for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
            if isinstance(self.config.get(key), int):
                return self.config[key]
        return None

    @cached_property
    def weight_files(self) -> tuple[Path, ...]:
        """The weights: one file, or the shards a ``*.index.json`` lists (save_pretrained's split);
        for a classical baseline, the files it saved (vocabulary, idf, coefficients): its kind's."""
        return self.kind.weight_files(self.path)

    @property
    def weights_file(self) -> Path:
        """The first (for unsharded models, the only) weights file."""
        return self.weight_files[0]

    @property
    def weights_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.weight_files)

    @cached_property
    def num_parameters(self) -> int:
        """Parameter count (a transformers model's from its safetensors headers: no torch import)."""
        return self.kind.parameters(self)

    @property
    def size_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    @cached_property
    def weights_sha256(self) -> str:
        return self._sha256_on_disk(self.weight_files)

    def _sha256_on_disk(self, files) -> str:
        return self.kind.sha256(self.path, files)

    def check_unchanged(self) -> None:
        """Refuse (one line) to go on with weights on disk other than those this handle was loaded
        with: its hash (the cache key's, the run store's) and its PyTorch model would describe the
        old ones while workers read the new ones. What is compared: the files' sizes and times
        stamped at load (cheap); when they differ, the hash, if one was taken (the same bytes
        written again are fine). A handle made without a stamp is only checked by its hash."""
        files = self.kind.weight_files(self.path)
        now = stamp(files)
        if self._stamp is not None and now == self._stamp:
            return
        if "weights_sha256" in vars(self):  # a cached_property: unset until first read, from disk
            if self._sha256_on_disk(files) == self.weights_sha256:
                self._stamp = now
                return
        elif self._stamp is None:
            return
        raise UsageProblem(f"the weights in {self.path} changed after {self.name} was loaded; load it again "
                           f"(%load_model {self.name}) and re-run")

    # -- the PyTorch side, loaded on first use -----------------------------------------------
    def torch_model(self):
        self._transformers_only("has no PyTorch model")
        if self._torch_model is None:
            import transformers

            auto = getattr(transformers, self.task_plugin.auto_class(self))
            self._torch_model = auto.from_pretrained(
                self.path, trust_remote_code=self.trust_remote_code,
                use_safetensors=self.weights_file.suffix == ".safetensors",
            ).eval()
        return self._torch_model

    def _transformers_only(self, what: str) -> None:
        """A model with one way to run of its own (the TF-IDF baseline) has no PyTorch side."""
        if self.kind.RUNTIME:
            raise UnsupportedError(f"{self.name} is {self.kind.WHAT} and {what}; benchmark and evaluate it as it is "
                                   f"(it reads {self.task_plugin.inputs.EXAMPLES} end to end)")

    def tokenizer(self):
        self._transformers_only("has no tokenizer of its own")
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=self.trust_remote_code)
        return self._tokenizer

    def preprocessor(self):
        """What turns the task's examples into inputs (the tokenizer, the image processor, the
        speech processor: the task's), loaded once."""
        if self._preprocessor is None:
            self._preprocessor = self.task_plugin.inputs.preprocessor(self)
        return self._preprocessor

    # -- display -----------------------------------------------------------------------------
    @property
    def reference_note(self) -> str | None:
        """What its PyTorch model (every figure's reference) is, where a format made its folder from
        another file (a GGUF's weights dequantised to float32); None for a folder as given."""
        for fmt in tasks.formats():
            if fmt.reference is not None and (note := fmt.reference(self.path)):
                return note
        return None

    def provenance(self) -> dict:
        """What a run records of the model: where it came from, its weights' sha256, task and name."""
        return {"source": self.source, "path": str(self.path), "revision": self.revision,
                "weights_sha256": self.weights_sha256, "task": self.task, "name": self.name}

    def card(self):
        labels = ", ".join(f"{i}:{v}" for i, v in sorted(self.labels.items())) or "-"
        try:
            parameters = f"{self.num_parameters / 1e6:.2f} M"
        except ModelSourceError as exc:  # weights changed on disk since the load: shown, not a traceback
            parameters = f"unknown: {exc}"
        return key_value_table(f"model {self.name}", [
            ("architecture", f"{self.architecture} ({self.model_type})"),
            ("parameters", parameters),
            ("task", self.task),
            ("labels", labels),
            *self.task_plugin.card_lines(self),
            ("size on disk", human_bytes(self.size_on_disk)),
            ("source", self.source),
            ("revision", self.revision or "-"),
            ("folder", str(self.path)),
        ] + self.kind.card_lines(self) + ([("dataset", f"{len(self.dataset)} held-out examples (.dataset)")]
                                          if self.dataset is not None else [])
            + ([("reference", note)] if (note := self.reference_note) else []))

    def __str__(self) -> str:
        return str(self.card())

    def __repr__(self) -> str:
        return f"<ModelHandle {self.name}: {self.architecture}, {self.task}, {self.source}>"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        return self.card()._repr_html_()


def load_model(source: Any, task: str | None = None, revision: str | None = None,
               trust_remote_code: bool = False, name: str | None = None, data: Any = None,
               text_column: str | None = None, label_column: str | None = None,
               gguf_file: str | None = None) -> ModelHandle:
    """Load a model from a folder, a hub id, a transformers model or pipeline, ``"demo"``, or
    ``"tfidf"`` with ``data`` (a TF-IDF + logistic-regression baseline trained on its training split);
    where each comes from is :mod:`hfmagic.models.sources`."""
    if task is not None:
        task = check_task(task)
    sources.check_options(source, data, gguf_file)
    if isinstance(source, ModelHandle):  # a handle already bound: the same folder, as asked for
        if task not in (None, source.task):
            check_task(task, source.config, source.name)
            return dataclasses.replace(source, task=task, name=name or source.name, _torch_model=None)
        return dataclasses.replace(source, name=name) if name not in (None, source.name) else source
    options = {"task": task, "data": data, "text_column": text_column, "label_column": label_column}
    path, label, dataset, own_task = sources.resolve(source, options, revision, gguf_file)
    task = task or own_task
    if not (path / "config.json").exists():
        raise ModelSourceError(f"{path} holds no model (no config.json); pass the folder a model "
                               "was saved to with save_pretrained")
    try:
        config = json.loads((path / "config.json").read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelSourceError(f"{path / 'config.json'} is not valid JSON ({exc}); save the model again "
                               "with save_pretrained") from None
    if not isinstance(config, dict):
        raise ModelSourceError(f"{path / 'config.json'} holds no model config (a JSON object); save the "
                               "model again with save_pretrained")
    task = check_task(task, config, label) if task else infer_task(config, label)
    handle = ModelHandle(path=path, task=task, source=label, revision=revision,
                         trust_remote_code=trust_remote_code, dataset=dataset,
                         name=name or derive_name(label))
    handle.kind.check(handle)  # its files readable (weights not cut short): now, not at export
    handle._stamp = stamp(handle.weight_files)
    if not handle.kind.READS_EXAMPLES:  # what the task's inputs need beside the weights: a tokenizer, a processor
        handle.task_plugin.check_folder(path)
    if config.get("auto_map") and not trust_remote_code:
        raise UsageProblem(f"{label} needs code from its repository to load; read that code, then "
                           "pass --trust-remote-code")
    return handle


def reload(handle: ModelHandle, task: str | None = None, name: str | None = None,
           trust_remote_code: bool = False) -> ModelHandle:
    """``handle`` read again from its folder (``%load_model NAME`` of a bound handle): whatever was
    saved there since (a new hash, a new PyTorch model), for its task unless ``task`` names another
    (or the folder now holds an architecture its task does not serve: then the one inferred), with
    its source and held-out split kept. A hub model is read from its downloaded copy and a GGUF file
    from its dequantised one: a newer revision or a changed file loads by its id or path."""
    config = read_json(handle.path / "config.json")  # {} when it is gone: load_model says so
    if task is None and task_problem(handle.task, config) is None:
        task = handle.task
    elif task is not None and config:
        check_task(task, config, handle.name)  # the message names the handle, not its folder
    fresh = load_model(handle.path, task=task, revision=handle.revision, name=name or handle.name,
                       trust_remote_code=trust_remote_code or handle.trust_remote_code)
    return dataclasses.replace(fresh, source=handle.source, dataset=handle.dataset)


def check_distinct(models: list) -> None:
    """Several models in one comparison need one name each: two different weights under one name
    would be indistinguishable in every table, and the same model twice would give each row twice."""
    seen: dict[str, str] = {}
    for model in models:
        sha = model.weights_sha256
        if model.name in seen:
            if seen[model.name] == sha:
                raise UsageProblem(f"{model.name} is listed twice; list each model once")
            raise UsageProblem(f"two different models are both named {model.name!r}; load one under another "
                               "name (%load_model SOURCE --name NAME)")
        seen[model.name] = sha


def derive_name(source: str) -> str:
    """A Python identifier for a source: ``org/MiniLM-L6`` -> ``minilm_l6``."""
    stem = Path(source.rstrip("/")).name or "model"
    ident = re.sub(r"\W+", "_", stem).strip("_").lower() or "model"
    if keyword.iskeyword(ident):
        return f"{ident}_model"
    return f"m_{ident}" if ident[0].isdigit() else ident


def stamp(files) -> tuple:
    """Each file's path, size, modification and change times: what says, without reading them, that
    the weights are still the files a handle was loaded from (a copy that keeps the modification
    time of its source still gets a change time of its own)."""
    return tuple((str(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns) for p in files for st in [p.stat()])
