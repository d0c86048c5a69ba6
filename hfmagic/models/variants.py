"""The variants of one model that hfmagic builds and compares: PyTorch itself and its ONNX exports.

``%export_onnx`` returns a :class:`Variants`; ``%benchmark`` and ``%evaluate`` take one (or a
model, for which they build it). A variant that failed to build stays in the list with its
``error``: nothing is dropped silently.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from hfmagic.core.errors import UsageProblem
from hfmagic.core.results import Column, Table
from hfmagic.models.handle import ModelHandle, load_model
from hfmagic.onnx.plan import TORCH  # noqa: F401 (the PyTorch variant's name)

# why a dynamically quantized variant's predictions depend on the batch it runs in
BATCH_DEPENDENT_WHY = "dynamic int8 takes each activation's quantization range over the whole padded batch"


def model_of(target) -> ModelHandle:
    """The model a target of %benchmark or %evaluate is (a Variants' own; a handle, a folder or a
    model object, loaded), refused in one line when its weights on disk are no longer those it was
    loaded with: a torch-only run is checked as an export is (ModelHandle.check_unchanged)."""

    model = target.model if isinstance(target, Variants) else load_model(target)
    model.check_unchanged()
    return model


def own_variants(model) -> "Variants | None":
    """The variants a model with one way to run has (its kind's ``RUNTIME``: a classical baseline's
    one, ``sklearn``), instead of PyTorch and its exports; None for a model export_onnx builds."""
    runtime = model.kind.RUNTIME
    if not runtime:
        return None
    return Variants(model, [Variant(runtime, model, runtime=runtime, size_bytes=model.weights_bytes)])


@dataclass
class Variant:
    """One way to run the model: ``torch`` (eager PyTorch) or an ONNX file."""

    name: str                      # "torch", "fp32", "O1".."O4", "int8", "O2-int8", "int8-static"
    model: ModelHandle
    path: Path | None = None       # the .onnx file; None for torch
    level: str | None = None       # "fp32", "O1", ..., "O4"; None for torch
    quantization: str | None = None  # e.g. "dynamic avx512_vnni per-channel"; None when not quantized
    size_bytes: int | None = None
    nodes: int | None = None
    fused_nodes: int | None = None
    build_seconds: float | None = None
    validation: dict[str, Any] = field(default_factory=dict)  # max_abs_diff, cosine, argmax_agreement
    error: str | None = None       # why it failed to build or diverged; kept, never dropped
    cli_command: str | None = None  # the optimum-cli command that rebuilds it
    sha256: str | None = None
    runtime: str | None = None     # a model kind's own ("sklearn": a classical baseline); None: told by path and level
    recipe: str | None = None      # the quantizer's recipe export ran: "dynamic", "static", "nncf", "int4", ...
    runs_on: tuple[str, ...] | None = None  # the only backends a sweep times it on (None: each that runs its kind)

    @property
    def kind(self) -> str:
        """What runs it: "torch", "onnx", or a runtime of its own ("sklearn", "genai"). An ONNX variant
        that failed to build has no file but keeps its level, so it is not mistaken for the PyTorch model."""
        if self.runtime:
            return self.runtime
        return TORCH if self.path is None and self.level is None else "onnx"

    @property
    def batch_dependent(self) -> bool:
        """Whether its predictions depend on the batch it runs in: dynamic int8 quantizes each
        activation with one range taken over the whole tensor, that is the whole padded batch, so
        the same text gets other int8 values beside other texts (or more padding). Static int8's
        ranges are fixed at calibration, int4's activations are quantized per row and block, and
        float graphs change by rounding alone: none of them depends on the batch."""
        return self.recipe == "dynamic"

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def folder(self) -> Path:
        """The folder ORTModel.from_pretrained takes (config, tokenizer and the ONNX file)."""
        return self.model.path if self.path is None else self.path.parent

    def row(self) -> dict[str, Any]:
        return {
            "variant": self.name, "level": self.level, "quantization": self.quantization,
            "file": self.path.name if self.path else self.model.kind.FILE,
            "size_mb": None if self.size_bytes is None else self.size_bytes / 1e6,
            "nodes": self.nodes, "fused_nodes": self.fused_nodes,
            "max_abs_diff": self.validation.get("max_abs_diff"),
            "cosine": self.validation.get("cosine"),
            "argmax_agreement": self.validation.get("argmax_agreement"),
            "build_s": self.build_seconds, "status": self.error or "ok",
            "cli": self.cli_command, "path": str(self.path) if self.path else None,
        }


VARIANT_COLUMNS = [
    Column("variant"), Column("file"), Column("size_mb", "size MB", ".1f", "right"),
    Column("nodes", "nodes", "d", "right"), Column("fused_nodes", "fused", "d", "right"),
    Column("max_abs_diff", "max |diff|", ".2e", "right"), Column("cosine", "cosine", ".5f", "right"),
    Column("argmax_agreement", "argmax agree", ".1%", "right"), Column("build_s", "build s", ".1f", "right"),
    Column("status"),
]


@dataclass
class Variants:
    """An ordered set of variants of one model, with a table view."""

    model: ModelHandle
    items: list[Variant]
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None  # the export's run in the run store, when it was recorded

    def __iter__(self) -> Iterator[Variant]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.items]

    def __getitem__(self, name: str) -> Variant:
        for v in self.items:
            if v.name == name:
                return v
        raise UsageProblem(f"no variant {name!r}; this set has: {', '.join(self.names)}")

    def select(self, names: list[str] | None) -> "Variants":
        if not names:
            return self
        return Variants(self.model, [self[n] for n in names], list(self.notes))

    def table(self) -> Table:
        return Table([v.row() for v in self.items], VARIANT_COLUMNS,
                     title=f"ONNX variants of {self.model.name}", notes=list(self.notes))

    def to_pandas(self):
        return self.table().to_pandas()

    def __str__(self) -> str:
        text = str(self.table())
        cmds = [f"  {v.name}: {v.cli_command}" for v in self.items if v.cli_command]
        return text + ("\nhow each was built (rebuild with these):\n" + "\n".join(cmds) if cmds else "")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        cmds = [(v.name, v.cli_command) for v in self.items if v.cli_command]
        if not cmds:
            return self.table()._repr_html_()
        lines = "\n".join(f"{html.escape(name)}: {html.escape(cmd)}" for name, cmd in cmds)
        return (self.table()._repr_html_() + "<details class='hfm-rebuild'><summary>how each was built (rebuild with these)"
                f"</summary><pre>{lines}</pre></details>")
