"""Building the variants ``export_onnx`` lacks: each step in a temporary folder, validated against
PyTorch, described (sizes, graph, validation) and installed into the cache in one rename. A step
that fails or diverges becomes the variant's ``.error``; a full disk or an opset the exporter refuses
is the caller's to fix, one clear error."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from hfmagic.core.compilecache import no_global_headers
from hfmagic.core.errors import BuildError, UnsupportedError
from hfmagic.export.cache import FORMAT, META, from_meta, install, read_meta
from hfmagic.models.variants import Variant
from hfmagic.onnx import build as onnxbuild
from hfmagic.onnx.build import default_opset, describe_quantization, graph_files, graph_stats, onnx_size, variant_sha256
from hfmagic.onnx.plan import Step


class Builder:
    """Builds steps into temporary folders, validates them, and installs them."""

    def __init__(self, model, root, places, device, opset, isa, per_channel, data, int4: dict,
                 calibration_method: str = "minmax", exclude: list[str] | None = None, dynamic=None):
        self.model, self.root, self.places, self.device = model, root, places, device
        self.calibration_method, self.exclude = calibration_method, exclude or []
        self.opset, self.isa, self.per_channel, self.data = opset, isa, per_channel, data
        self.block_size, self.int4_method = int4["block_size"], int4["method"]
        self.dynamic = dynamic  # dynamic int8's named settings (hfmagic.onnx.plan.Dynamic), None: the preset
        self.reference = None

    def build(self, step: Step, key: str, built: dict[str, Variant]) -> Variant:
        variant = Variant(step.name, self.model, level=step.level, recipe=step.quant, runtime=step.runtime)
        own = self._own_quantization(step)
        if own is not None:  # a step only the task knows (onnxruntime-genai's, llama.cpp's)
            variant.quantization = own or None
        elif step.quant:
            variant.quantization = describe_quantization(step.quant, self.isa, self.per_channel, self.block_size,
                                                         self.int4_method, self.dynamic)
            if step.quant == "static":
                variant.quantization += f", {self.calibration_method} calibration"
                if self.exclude:
                    variant.quantization += f", {len(self.exclude)} nodes left in float"
        source = built.get(step.source) if step.source else None
        if source is not None and source.path is None:
            variant.error = f"not built: {step.source}, which it starts from, failed ({source.error})"
            return variant
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".tmp-{os.getpid()}-"))
        try:
            start = time.perf_counter()
            try:
                command = self._run_step(step, tmp, source)
            except Exception as exc:  # noqa: BLE001 - kept on the variant, never dropped
                self._raise_if_user_error(step, exc)
                variant.error = f"build failed: {type(exc).__name__}: {_first_line(exc)}"
                return variant
            seconds = time.perf_counter() - start
            if own is not None:  # now that the file is there, the task may say more of it (llama.cpp's mix of types)
                variant.quantization = self._own_quantization(step, tmp / step.file) or None
            meta = self._describe(step, key, tmp, command, seconds, variant.quantization)
            if isinstance(meta, str):
                variant.error = meta
                return variant
            (tmp / META).write_text(json.dumps(meta, indent=1))
            place = self.places[step.name]
            install(tmp, place)
            if read_meta(place, key) is None:  # lost a race to a different build: take none of it
                raise BuildError(f"{place} was changed by another process while building; run again")
            return from_meta(self.model, step, place, read_meta(place, key))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _own_quantization(self, step: Step, path: Path | None = None) -> str | None:
        return self.model.task_plugin.export.quantization(step, {
            "block_size": self.block_size, "int4_method": self.int4_method, "isa": self.isa,
            "per_channel": self.per_channel}, path)

    def _run_step(self, step: Step, out: Path, source: Variant | None) -> str:
        """Run one step with the libraries' chatter (tracer warnings, printed graphs) silenced:
        what matters reaches the user as the variant's figures or error."""
        import contextlib
        import io
        import logging
        import warnings

        try:
            logging.disable(logging.WARNING)
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), no_global_headers():
                warnings.simplefilter("ignore")
                own = self.model.task_plugin.export.build_step(self.model, step, out, source, {
                    "block_size": self.block_size, "int4_method": self.int4_method, "isa": self.isa,
                    "per_channel": self.per_channel, "opset": self.opset, "device": self.device, "data": self.data})
                if own is not None:  # a step only the task knows (a decoder's int4, fp16, onnxruntime-genai)
                    return own
                if step.level == "fp32" and not step.quant:
                    return onnxbuild.export_fp32(self.model, out, self.opset, self.device)
                if step.level == "fused" and not step.quant:
                    return onnxbuild.fuse(source.folder, out, self.model.model_type)
                if not step.quant:
                    return onnxbuild.optimize(source.folder, out, step.level, self.device)
                if step.quant == "dynamic":
                    return onnxbuild.quantize_dynamic(source.folder, source.path.name, out, self.isa,
                                                      self.per_channel, step.name,
                                                      self.model.task_plugin.export.quant_operators(self.model),
                                                      self.dynamic)
                features = self.model.task_plugin.export.calibration_features(self.model, self.data)
                if step.quant == "nncf":
                    return onnxbuild.quantize_nncf(source.folder, out, features)
                return onnxbuild.quantize_static(source.folder, out, self.isa, self.per_channel, features,
                                                 self.calibration_method, self.exclude)
        finally:
            logging.disable(logging.NOTSET)

    def _raise_if_user_error(self, step: Step, exc: Exception) -> None:
        """A full disk, or an opset the exporter refuses, is the caller's to fix: one clear error."""
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise BuildError(f"no space left in {self.root} while building {step.name}; free some space or "
                             "pass --output DIR on another disk") from None
        if self.opset is not None and step.name == "fp32":
            reason = _first_line(exc).split(". ")[0]  # torch appends the traced graph after the reason
            least = default_opset(self.model)
            if "opset" in reason.lower() or (least is not None and self.opset < least):
                hint = f"use opset {least} (optimum's default for it) or higher" if least else "use a higher opset"
                raise UnsupportedError(f"the exporter refused opset {self.opset} for {self.model.model_type}: "
                                       f"{reason}; {hint}, or leave --opset out") from None

    def _describe(self, step: Step, key: str, folder: Path, command: str, seconds: float,
                  quantization: str | None) -> dict | str:
        """The entry's record (sizes, graph, validation), or why it cannot be used."""

        file = self.model.task_plugin.export.step_file(step, self.model)
        path = folder / file
        if not path.is_file():
            return f"build failed: the step wrote no {file}"
        if self.reference is None:
            task = self.model.task_plugin
            examples, source = task.validation.examples(self.model, self.data)
            self.reference = task.validation.reference(self.model, list(examples), source)
        try:
            validation = self.reference.compare(path, self.device)
        except Exception as exc:  # noqa: BLE001 - kept on the variant, never dropped
            runtime = "llama.cpp" if step.runtime == "gguf" else "onnxruntime"
            return f"built, but {runtime} could not run it: {type(exc).__name__}: {_first_line(exc)}"
        nodes, fused = graph_stats(path)
        if problem := self.model.task_plugin.export.check_built(step.quant, path):
            return problem
        return {"format": FORMAT, "key": key, "name": step.name, "level": step.level, "file": file,
                "quantization": quantization, "size_bytes": onnx_size(path), "nodes": nodes,
                "fused_nodes": fused, "build_seconds": seconds, "validation": validation,
                "sha256": variant_sha256(path), "files": [p.name for p in graph_files(path)], "cli_command": command,
                "runtime": step.runtime}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
