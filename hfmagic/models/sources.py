"""Where a model comes from, as a saved folder: a local folder, a file a task reads (GGUF), a model
known by name (``demo``, ``tfidf``, ``smollm2``, ``digits-vit``: what the registered tasks bring),
a hub id, or a transformers object in memory. :func:`resolve` gives the folder; the handle
(:mod:`hfmagic.models.handle`) reads it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hfmagic.core.config import settings
from hfmagic.core.errors import ModelSourceError, OfflineError, UsageProblem
from hfmagic.core.hashing import folder_sha256
from hfmagic.tasks import ALIASES, formats, names, sources

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class _BuiltIns(Mapping):
    """The models known by name whose held-out split is data of the same name (``demo``,
    ``demo-small``, ``digits-vit``): rebuilt from their recipe by name (reruns), their split read by
    name (%evaluate). A live view of what the registered tasks bring."""

    def _named(self) -> dict:
        return {name: s for name, s in sources().items() if s.named_data}

    def __getitem__(self, name: str):
        return self._named()[name]

    def __iter__(self):
        return iter(self._named())

    def __len__(self) -> int:
        return len(self._named())


BUILT_IN_MODELS = _BuiltIns()


def resolve(source: Any, options: dict, revision: str | None = None,
            gguf_file: str | None = None) -> tuple[Path, str, Any, str | None]:
    """(the folder, its label, its held-out split or None, the task an object says it is or None)
    of what ``load_model`` was given; ``options``: the task asked for and ``--data`` (for a source
    that trains on it)."""
    known = sources()
    name = str(source) if isinstance(source, (str, os.PathLike)) else None
    if name is None:
        return _save_object(source), f"<{type(source).__name__} object>", None, _object_task(source)
    if name in known:
        path, dataset = known[name].build(options)
        return path, name, dataset, None
    if Path(source).expanduser().exists():
        path = Path(source).expanduser().resolve()
        for fmt in formats():
            if (found := fmt.find(path)) is not None:  # a file a task reads (GGUF): made a folder once, cached
                return fmt.folder(found), name, None, None
        if not path.is_dir():
            raise ModelSourceError(f"{source} is a file; pass the folder a model was saved to "
                                   "with save_pretrained (or a .gguf file)")
        return path, name, None, None
    if _looks_local(name) or not _HUB_ID.match(name):
        raise ModelSourceError(f"no folder at {source}; pass a folder saved with save_pretrained, "
                               "a hub id, or demo")
    if gguf_file is not None:  # one file of a hub repository, made a folder by the task that reads it
        file = _gguf_from_hub(name, gguf_file, revision)
        fmt = next((f for f in formats() if f.find(file) is not None), None)
        if fmt is None:
            raise ModelSourceError(f"no hfmagic task reads {gguf_file}; pass a folder saved with save_pretrained")
        return fmt.folder(file), f"{source}/{gguf_file}", None, None
    return _from_hub(name, revision), name, None, None


def check_options(source: Any, data: Any, gguf_file: str | None) -> None:
    """--gguf-file names one .gguf file of a hub repository, never a local one; --data goes only to a
    source that trains on it (the tfidf baseline)."""
    if gguf_file is not None and (not isinstance(source, str) or Path(source).expanduser().exists()
                                  or not _HUB_ID.match(source) or not str(gguf_file).lower().endswith(".gguf")):
        raise UsageProblem("--gguf-file names one .gguf file of a hub repository (org/name --gguf-file "
                           "model.Q4_K_M.gguf); for a local file pass its path as the source")
    known = sources()
    name = str(source) if isinstance(source, (str, os.PathLike)) else None
    if data is not None and not (name in known and known[name].trains):
        trainers = " and ".join(n for n, s in known.items() if s.trains)
        raise UsageProblem(f"--data is what the {trainers} baseline trains on; other models load without it (pass "
                           "the data to %evaluate --data instead)")


def _looks_local(source: str) -> bool:
    return source.startswith((".", "/", "~")) or os.sep in source.strip("/").replace("/", "", 1)


def _from_hub(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

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
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

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
