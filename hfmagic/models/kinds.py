"""The default kind of model: a transformers one (:class:`Transformers`), saved with
``save_pretrained``: its weights in safetensors (or pickled, checked before anything unpickles
them), one file or shards; PyTorch and the ONNX exports run it. Other kinds come with a task
(:class:`hfmagic.tasks.kinds.ModelKind`: the TF-IDF baseline); :func:`kind_of` picks a config's.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from hfmagic.core.errors import ModelSourceError
from hfmagic.core.hashing import weights_sha256
from hfmagic.tasks import model_kind
from hfmagic.tasks.kinds import ModelKind

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # or sharded, with a .index.json beside


class Transformers(ModelKind):
    """A transformers model: weights read by their headers (no torch import), run by PyTorch and
    its ONNX exports."""

    NAME = "transformers"
    WHAT = "a transformers model"

    @classmethod
    def claims(cls, config: dict) -> bool:
        return True  # whatever no task's kind claims

    def weight_files(self, path: Path) -> tuple[Path, ...]:
        return weight_files(path)

    def sha256(self, path: Path, files: tuple[Path, ...]) -> str:
        return weights_sha256(files)

    def parameters(self, model) -> int:
        """Parameter count from the safetensors headers (or a weights-only torch load)."""
        files = model.weight_files
        if files[0].suffix == ".safetensors":
            return sum(_prod(t["shape"]) for f in files for k, t in _safetensors_header(f).items() if k != "__metadata__")
        return sum(t.numel() for f in files for t in load_pickled_weights(f).values())

    def check(self, model) -> None:
        check_weights(model.weight_files)  # fail now, not at export, if they are missing or broken


TRANSFORMERS = Transformers()


def kind_of(config: dict) -> ModelKind:
    """The kind a saved config is: one a registered task brings that claims it, else transformers'."""
    return model_kind(config) or TRANSFORMERS


def weight_files(path: Path) -> tuple[Path, ...]:
    """A saved transformers model's weights: one file, or the shards a ``*.index.json`` lists."""
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


def _prod(shape) -> int:
    out = 1
    for n in shape:
        out *= n
    return out


def _safetensors_header(path: Path) -> dict:
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(length))


def check_weights(files: tuple[Path, ...]) -> None:
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
