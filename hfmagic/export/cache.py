"""The export cache: each variant is a folder ``<cache>/onnx/<key>`` where the key hashes the weights,
config and tokenizer files, the options that shape that variant, and the versions of the export
stack. A folder is built under a temporary name and renamed into place when complete, so an
interrupted build leaves no half-written entry (temporary folders of dead processes are swept on the
next call). ``output=`` writes ``<output>/<variant>`` folders instead, rebuilt when their key differs.
The entry's record (:data:`META`) holds its figures, so a cached variant needs no rebuild to be shown.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hfmagic.core.config import settings
from hfmagic.core.errors import BuildError, UsageProblem
from hfmagic.core.hashing import file_sha256
from hfmagic.models.variants import Variant
from hfmagic.onnx.plan import FOLDER_FILES, INT4_BLOCK, Step

FORMAT = 4  # bump when a recipe, the folder layout or what validation feeds changes: old entries are then left unused
# 4: validation and calibration feed only the inputs the model takes (no token_type_ids to a GPT-2 or a decoder)
META = "hfmagic-variant.json"
STACK = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "onnxruntime-genai")


def writable_root(output) -> Path:
    """The folder the variants go in (``output``, else the cache's ``onnx``), made and checked writable."""
    root = Path(output).expanduser() if output else settings().cache_path / "onnx"
    try:
        root.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()
    except OSError as exc:
        raise UsageProblem(f"cannot write to {root} ({exc.strerror or exc}); pass --output with a folder "
                           "you can write to") from None
    return root


def check_space(root: Path, model, count: int) -> None:
    """Refuse early when the disk cannot hold the variants (each at most about the weights' size)."""
    need = model.weights_bytes * count * 1.2 + 10e6
    free = shutil.disk_usage(root).free
    if free < need:
        raise BuildError(f"only {free / 1e6:.0f} MB free in {root}, and the {count} variants need about "
                         f"{need / 1e6:.0f} MB; free some space or pass --output DIR on another disk")


def base_key(model, opset, device) -> dict[str, Any]:
    """What every variant of ``model`` is made from: its weights and files, the opset and device
    asked, and the versions of the export stack."""
    import importlib.metadata as md

    versions = {}
    for dist in STACK:
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    # every file a variant folder is made from (the code too, when the model brings its own)
    names = list(FOLDER_FILES) + (sorted(p.name for p in model.path.glob("*.py")) if model.trust_remote_code else [])
    files = {name: file_sha256(model.path / name) for name in names if (model.path / name).is_file()}
    return {"format": FORMAT, "weights_sha256": model.weights_sha256, "files": files,
            "task": model.task, "opset": opset, "device": device, "versions": versions}


def step_key(base: dict, step: Step, isa: str | None, per_channel: bool, data, int4: dict | None = None,
             operators=None, calibration_method: str = "minmax", exclude: list[str] | None = None,
             dynamic=None) -> str:
    """One variant's cache key: the base key and the options that shape that step (and none other,
    so an entry is shared by every call that builds the same file). ``dynamic``: dynamic int8's
    named settings (None, the CPU's preset, keys as before they could be named)."""
    int4 = int4 or {"block_size": INT4_BLOCK, "method": "rtn"}
    spec = {"base": base, "name": step.name, "level": step.level, "source": step.source, "quant": step.quant}
    if step.quant == "int4":
        spec |= {"block_size": int4["block_size"], "int4_method": int4["method"]}
    elif step.quant in ("int8-wo", "genai-int8-wo"):  # round to nearest at 8 bits: the block is its one setting
        spec |= {"block_size": int4["block_size"]}
    elif step.quant == "genai-int4":  # HQQ over the builder's fp32 graph, or the builder's own RTN
        spec |= {"block_size": int4["block_size"], "int4_method": int4["method"]}
    elif step.quant in ("genai-fp32", "fp16"):
        pass
    elif step.quant == "nncf":  # NNCF picks its own int8 scheme: its version shapes the file
        import importlib.metadata as md

        spec["nncf"] = md.version("nncf")
    elif step.quant:
        spec |= {"isa": isa, "per_channel": per_channel}
        if step.quant == "dynamic" and dynamic is not None:
            spec |= {"per_channel": dynamic.per_channel, "weight_type": dynamic.weight_type,
                     "reduce_range": dynamic.reduce_range}
        if operators:
            spec["operators"] = list(operators)
    if step.quant in ("int4", "int8-wo", "genai-int4", "genai-int8-wo"):  # a tied output projection folded and
        spec["head_bits"] = 8  # quantized at 8 bits (quantize_graph): files built before kept it fp32 or int4
    if step.calibrated:
        spec["calibration"] = data.fingerprint
    if step.quant == "static":
        if calibration_method != "minmax":  # min-max keys as before it had a choice
            spec["calibration_method"] = calibration_method
        if exclude:
            spec["exclude_nodes"] = list(exclude)
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def read_meta(place: Path, key: str) -> dict | None:
    """The entry's record when ``place`` holds a complete build for ``key``, else None."""
    try:
        meta = json.loads((place / META).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or not (place / meta.get("file", "")).is_file():
        return None
    return meta


def from_meta(model, step: Step, place: Path, meta: dict) -> Variant:
    """The variant an entry holds, read off its record (its error judged again by the task's rule)."""
    return Variant(step.name, model, path=place / meta["file"], level=step.level,
                   quantization=meta.get("quantization"), size_bytes=meta["size_bytes"], nodes=meta["nodes"],
                   fused_nodes=meta["fused_nodes"], build_seconds=meta["build_seconds"],
                   validation=meta["validation"], error=model.task_plugin.validation.divergence(step.name, meta["validation"]),
                   runtime=meta.get("runtime"), recipe=step.quant,
                   cli_command=meta["cli_command"], sha256=meta["sha256"])


def sweep_stale_temps(root: Path) -> None:
    """Remove temporary build folders left by processes that died mid-build."""
    for tmp in root.glob(".tmp-*"):
        try:
            pid = int(tmp.name.split("-")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def install(tmp: Path, place: Path) -> None:
    """Move a finished build into place in one rename; an older entry there is replaced."""
    old = None
    if place.exists():
        old = place.with_name(f".tmp-{os.getpid()}-old-{place.name}")
        os.replace(place, old)
    try:
        os.replace(tmp, place)
    except OSError:  # another process installed the same key first: keep theirs
        if old is not None:
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
