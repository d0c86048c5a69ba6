"""Loading a Hugging Face model: a local folder, a hub id, an object in memory, or ``demo``.

:func:`load_model` returns a :class:`ModelHandle`: a light description read from the folder's
config and weight headers (no torch import), with the PyTorch model and tokenizer loaded on
first use. Everything later (export, benchmark, evaluate) starts from a handle's folder.
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from hfmagic.tasks.text import demo
from hfmagic.tasks.vision import demo as vision_demo
from hfmagic.core.config import settings
from hfmagic.core.hashing import folder_sha256, weights_sha256
from hfmagic.core.errors import ModelSourceError, OfflineError, UnsupportedError, UsageProblem
from hfmagic.core.results import human_bytes, key_value_table

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # or sharded, with a .index.json beside
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# built-in model names -> the builder that gives (its folder, built once into the cache; its held-out split)
BUILT_IN_MODELS = {name: partial(demo.built_in, name) for name in demo.RECIPES}
BUILT_IN_MODELS["digits-vit"] = partial(vision_demo.built_in, "digits-vit")  # the image model (hfmagic.tasks.vision.demo)


def check_task(task: str, config: dict | None = None, where: str = "this model") -> str:
    """A registered task's name (aliases resolved); with a config, one its architecture serves
    (:func:`task_problem` says why not, in one line)."""
    from hfmagic.tasks import get_task

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
    from hfmagic.tasks import get_task, names, serving

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
    from hfmagic.tasks import infer_task as infer

    return infer(config, where)


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
        from hfmagic.tasks.base import read_json

        return read_json(self.path / "preprocessor_config.json")

    @property
    def model_type(self) -> str:
        return self.config.get("model_type", "?")

    @property
    def architecture(self) -> str:
        archs = self.config.get("architectures") or [self.model_type]
        return archs[0]

    @property
    def framework(self) -> str:
        """What runs it: "transformers", or "sklearn" for a classical baseline (``%load_model tfidf``)."""
        from hfmagic.tasks.text.baseline import is_baseline

        return "sklearn" if is_baseline(self.config) else "transformers"

    @property
    def task_plugin(self):
        """The task's plugin (hfmagic.tasks): what every step asks about inputs, shapes, outputs."""
        from hfmagic.tasks import get_task

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
        for a classical baseline, the files it saved (vocabulary, idf, coefficients)."""
        return _weight_files(self.path, self.framework)

    @property
    def weights_file(self) -> Path:
        """The first (for unsharded models, the only) weights file."""
        return self.weight_files[0]

    @property
    def weights_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.weight_files)

    @cached_property
    def num_parameters(self) -> int:
        """Parameter count from the safetensors headers (or a weights-only torch load)."""
        if self.framework == "sklearn":
            from hfmagic.tasks.text.baseline import parameters

            return parameters(self.path)
        if self.weights_file.suffix == ".safetensors":
            return sum(_prod(t["shape"]) for f in self.weight_files
                       for k, t in _safetensors_header(f).items() if k != "__metadata__")
        return sum(t.numel() for f in self.weight_files for t in load_pickled_weights(f).values())

    @property
    def size_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    @cached_property
    def weights_sha256(self) -> str:
        return self._sha256_on_disk(self.weight_files)

    def _sha256_on_disk(self, files) -> str:
        if self.framework == "sklearn":  # the baseline's own identity, the same one it saves and loads with
            from hfmagic.tasks.text.baseline import folder_sha256

            return folder_sha256(self.path)
        return weights_sha256(files)

    def check_unchanged(self) -> None:
        """Refuse (one line) to go on with weights on disk other than those this handle was loaded
        with: its hash (the cache key's, the run store's) and its PyTorch model would describe the
        old ones while workers read the new ones. What is compared: the files' sizes and times
        stamped at load (cheap); when they differ, the hash, if one was taken (the same bytes
        written again are fine). A handle made without a stamp is only checked by its hash."""
        files = _weight_files(self.path, self.framework)
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
        if self.framework != "transformers":
            raise UnsupportedError(f"{self.name} is a classical {self.framework} baseline and {what}; benchmark "
                                   "and evaluate it as it is (it reads texts end to end)")

    def tokenizer(self):
        self._transformers_only("has no tokenizer of its own (TF-IDF reads the texts)")
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=self.trust_remote_code)
        return self._tokenizer

    def preprocessor(self):
        """What turns the task's examples into inputs (the tokenizer, the image processor, the
        speech processor: the task's), loaded once."""
        if self._preprocessor is None:
            self._preprocessor = self.task_plugin.preprocessor(self)
        return self._preprocessor

    # -- display -----------------------------------------------------------------------------
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
        ] + self._baseline_lines() + ([("dataset", f"{len(self.dataset)} held-out examples (.dataset)")] if self.dataset is not None else []))

    def _baseline_lines(self) -> list[tuple[str, str]]:
        if self.framework != "sklearn":
            return []
        c = self.config
        return [("vocabulary", f"{c.get('vocab_size', 0):,} terms"),
                ("trained", f"in {c.get('train_s', float('nan')):.2f} s on {c.get('n_train')} texts of "
                            f"{c.get('trained_on')}")]

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
    ``"tfidf"`` with ``data`` (a TF-IDF + logistic-regression baseline trained on its training split)."""
    if task is not None:
        task = check_task(task)
    if gguf_file is not None and (not isinstance(source, str) or Path(source).expanduser().exists()
                                  or not _HUB_ID.match(source) or not str(gguf_file).lower().endswith(".gguf")):
        raise UsageProblem("--gguf-file names one .gguf file of a hub repository (org/name --gguf-file "
                           "model.Q4_K_M.gguf); for a local file pass its path as the source")
    if data is not None and str(source) != "tfidf":
        raise UsageProblem("--data is what the tfidf baseline trains on; other models load without it (pass "
                           "the data to %evaluate --data instead)")
    if isinstance(source, ModelHandle):  # a handle already bound: the same folder, as asked for
        if task not in (None, source.task):
            check_task(task, source.config, source.name)
            return dataclasses.replace(source, task=task, name=name or source.name, _torch_model=None)
        return dataclasses.replace(source, name=name) if name not in (None, source.name) else source
    dataset = None
    if not isinstance(source, (str, os.PathLike)):
        path, label = _save_object(source), f"<{type(source).__name__} object>"
        task = task or _object_task(source)
    elif str(source) == "tfidf":
        from hfmagic.tasks.text.baseline import TEST_FILE, build

        from hfmagic.tasks import get_task, names

        if task is not None and get_task(task).CLASSICAL_BASELINE != "tfidf":
            having = [n for n in names() if get_task(n).CLASSICAL_BASELINE == "tfidf"]
            why = get_task(task).CLASSICAL_BASELINE
            raise UsageProblem(f"{task} has no classical baseline{f' ({why})' if why else ''}; the tfidf baseline "
                               f"is for {', '.join(having)} (leave --task out)")

        path, label = build(data, text_column, label_column)[0], "tfidf"
        import pandas as pd

        dataset = pd.read_json(path / TEST_FILE, lines=True)
    elif str(source) in BUILT_IN_MODELS:
        (path, dataset), label = BUILT_IN_MODELS[str(source)](), str(source)
    elif str(source) == "smollm2":  # a real decoder LLM, from its GGUF file
        from hfmagic.tasks.generation import gguf

        path, label = gguf.folder_for(gguf.smollm2()), "smollm2"
    elif Path(source).expanduser().exists():
        path, label = Path(source).expanduser().resolve(), str(source)
        from hfmagic.tasks.generation import gguf

        if (found := gguf.find(path)) is not None:  # llama.cpp's format: dequantised once, into the cache
            path = gguf.folder_for(found)
        elif not path.is_dir():
            raise ModelSourceError(f"{source} is a file; pass the folder a model was saved to "
                                   "with save_pretrained (or a .gguf file)")
    elif _looks_local(str(source)) or not _HUB_ID.match(str(source)):
        raise ModelSourceError(f"no folder at {source}; pass a folder saved with save_pretrained, "
                               "a hub id, or demo")
    else:
        if gguf_file is not None:  # llama.cpp's format from the hub: that one file, dequantised once
            from hfmagic.tasks.generation import gguf

            path, label = gguf.folder_for(_gguf_from_hub(str(source), gguf_file, revision)), f"{source}/{gguf_file}"
        else:
            path, label = _from_hub(str(source), revision), str(source)
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
    if handle.framework == "transformers":
        _check_weights(handle.weight_files)  # fail now, not at export, if they are missing or broken
    handle._stamp = stamp(handle.weight_files)
    handle.task_plugin.check_folder(path)  # a tokenizer for text tasks, a processor for others
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
    from hfmagic.tasks.base import read_json

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


def _weight_files(path: Path, framework: str) -> tuple[Path, ...]:
    if framework == "sklearn":
        from hfmagic.tasks.text.baseline import files

        return files(path)
    for name in WEIGHT_FILES:
        if (path / name).exists():
            return (path / name,)
        index = path / f"{name}.index.json"
        if index.exists():
            return _shards(index)
    raise ModelSourceError(f"{path} holds no weights ({' or '.join(WEIGHT_FILES)}, whole or "
                           "sharded); pass the folder a model was saved to with save_pretrained")


def _shards(index: Path) -> tuple[Path, ...]:
    try:
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if not all(isinstance(n, str) and n and "/" not in n for n in names):
            raise ValueError("its weight_map names no files")
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ModelSourceError(f"{index} is not a weights index ({exc}); save the model again "
                               "with save_pretrained") from None
    missing = [n for n in names if not (index.parent / n).is_file()]
    if missing or not names:
        raise ModelSourceError(f"{index.parent} lacks the shards its index lists ({', '.join(missing[:3]) or 'none'}"
                               "); copy the whole folder save_pretrained wrote")
    return tuple(index.parent / n for n in names)


def _looks_local(source: str) -> bool:
    return source.startswith((".", "/", "~")) or os.sep in source.strip("/").replace("/", "", 1)


def _prod(shape) -> int:
    out = 1
    for n in shape:
        out *= n
    return out


def _safetensors_header(path: Path) -> dict:
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(length))


def _check_weights(files: tuple[Path, ...]) -> None:
    """Each safetensors file has a readable header and holds every byte it declares (a truncated
    copy or a download cut short is refused here, in a line, not in a traceback later)."""
    for path in files:
        if path.suffix != ".safetensors":
            _check_torch_zip(path)
            continue
        size = path.stat().st_size
        try:
            with open(path, "rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                if length > size:
                    raise ValueError("header longer than the file")
                header = json.loads(fh.read(length))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (struct.error, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise ModelSourceError(f"{path} is not a readable safetensors file ({exc}); copy or save it "
                                   "again") from None
        if 8 + length + end > size:
            raise ModelSourceError(f"{path} is cut short: {size} bytes of the {8 + length + end} its header "
                                   "declares; copy or download it again")


def _check_torch_zip(path: Path) -> None:
    """A pickled-weights file in torch's zip format (torch >= 1.6) has its zip directory at the end:
    a copy cut short has none. (The older, pure-pickle format is not checked.) Then its pickle is
    checked for anything but tensors (:func:`check_pickled_weights`)."""
    import zipfile

    with open(path, "rb") as fh:
        is_zip = fh.read(4) == b"PK\x03\x04"
    if is_zip:
        try:
            zipfile.ZipFile(path).close()
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelSourceError(f"{path} is cut short or corrupt ({exc}); copy or save it again") from None
    check_pickled_weights(path, is_zip)


def check_pickled_weights(path: Path, is_zip: bool = True) -> None:
    """Refuse a pickled weights file whose pickle names globals that torch's ``weights_only``
    unpickler does not allow (``posix.system``, ...): nothing in it is run. A zip-format file is
    scanned without unpickling (torch's ``get_unsafe_globals_in_checkpoint``); an old-format one
    goes through the ``weights_only`` loader itself, which stops at the first such global."""
    import torch

    if is_zip:
        try:
            blocked = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelSourceError(f"{path} is not a weights file torch.save wrote ({_first_line(exc)}); save "
                                   "the model again with save_pretrained") from None
        if blocked:
            raise _unsafe_pickle(path, blocked)
        return
    load_pickled_weights(path)


def load_pickled_weights(path: Path) -> dict:
    """A pickled state dict through torch's ``weights_only`` loader; anything else is one line."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.findall(r"GLOBAL (\S+)", str(exc))
        raise _unsafe_pickle(path, found or ["a global torch does not allow"]) from None
    except (RuntimeError, ValueError, EOFError, OSError) as exc:
        raise ModelSourceError(f"{path} is not a weights file torch can read ({_first_line(exc)}); copy or "
                               "save it again") from None


def _unsafe_pickle(path: Path, blocked: list[str]) -> ModelSourceError:
    return ModelSourceError(
        f"{path} holds more than tensors: its pickle calls {', '.join(blocked)} (blocked by torch's "
        "weights_only loader), and hfmagic will not unpickle it, since that can run any code; use "
        "safetensors: get the model's model.safetensors from its publisher, or, only if you trust this file, "
        f"convert it once with sd = torch.load('{path}', weights_only=False); safetensors.torch.save_file({{k: "
        "v.contiguous().clone() for k, v in sd.items() if isinstance(v, torch.Tensor)}, "
        f"'{path.parent / 'model.safetensors'}') and remove the .bin")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _from_hub(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    files = ["*.json", "*.txt", "*.model"]  # config, tokenizer, vocabularies
    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=files + ["*.safetensors"]))
        if not any(path.glob("*.safetensors")):  # an older repository: pickled weights only
            path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=files + ["pytorch_model*.bin"]))
        return path
    except RevisionNotFoundError as exc:
        raise ModelSourceError(f"{repo_id} has no revision {revision!r} on the hub; check --revision") from exc
    except RepositoryNotFoundError as exc:
        raise ModelSourceError(f"no model {repo_id} on the hub (or it is private); check the id") from exc
    except (LocalEntryNotFoundError, OSError) as exc:  # connection errors are OSErrors in requests/httpx
        raise OfflineError(f"no folder {repo_id} here, and the hub cannot be reached to fetch it as a model "
                           "id; check the name, pass a local folder, or connect and try again") from exc


def _gguf_from_hub(repo_id: str, filename: str, revision: str | None) -> Path:
    """One GGUF file of a hub repository (its cached copy when offline)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline = (f"{filename} of {repo_id} is not in the hub cache here, and the hub cannot be reached to fetch it; "
               "connect and try again, or pass a local .gguf file")
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except LocalEntryNotFoundError as exc:  # before EntryNotFoundError, which it subclasses: offline, not absent
        raise OfflineError(offline) from exc
    except EntryNotFoundError as exc:
        raise ModelSourceError(f"{repo_id} has no file {filename}; check --gguf-file against the repository's "
                               "files") from exc
    except RepositoryNotFoundError as exc:
        raise ModelSourceError(f"no model {repo_id} on the hub (or it is private); check the id") from exc
    except OSError as exc:  # connection errors
        raise OfflineError(offline) from exc


def _object_task(obj: Any) -> str | None:
    from hfmagic.tasks import ALIASES, names

    task = getattr(obj, "task", None)  # a pipeline
    task = ALIASES.get(task, task)
    return task if task in names() else None


def _save_object(obj: Any) -> Path:
    """Save a transformers model or pipeline to the cache, content-addressed by its weights."""
    model = getattr(obj, "model", obj)
    tokenizer = getattr(obj, "tokenizer", None)
    if not hasattr(model, "save_pretrained") or not hasattr(model, "config"):
        raise ModelSourceError(f"{type(obj).__name__!r} object is not a transformers model or pipeline; "
                               "pass a folder, a hub id, a model or a pipeline")
    if tokenizer is None:
        tokenizer = _tokenizer_of(model)
    if tokenizer is None:
        raise ModelSourceError(f"this {type(model).__name__} comes with no tokenizer hfmagic can find (its "
                               "config names no folder holding one); pass a pipeline, or save the model "
                               "and its tokenizer to a folder with save_pretrained and pass that")
    root = settings().cache_path / "objects"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        final = root / folder_sha256(tmp)[:16]
        if final.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _tokenizer_of(model: Any):
    path = getattr(model.config, "_name_or_path", "")
    if path and Path(path).is_dir():
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError):
            return None
    return None
