"""One variant loaded on the backend %benchmark measures it with, run batch by batch for its
outputs: what %evaluate (here, or as a cluster's shard) scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hfmagic.models.variants import Variant


class Runner:
    """One variant loaded on the backend %benchmark measures it with (an ONNX file: onnxruntime
    unless ``backend`` says openvino); named outputs per batch."""

    def __init__(self, variant: Variant, threads: int | None = None, backend: str | None = None):
        from hfmagic.backends import get_backend
        from hfmagic.core.config import settings

        self.variant, self.task = variant, variant.model.task_plugin
        own = {"torch": "torch", "sklearn": "sklearn", "genai": "onnxruntime-genai"}
        self.backend = get_backend(own.get(variant.kind, backend or "onnxruntime"))()
        self.backend.load(variant, threads or settings().resolved_threads())

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        own = self.task.forward_outputs(self.backend, self.variant.model, feed)
        if own is not None:  # the task computes its outputs itself (a decoder's token log-likelihoods)
            return own
        names = self.backend.input_names
        out = self.backend.run(self.backend.prepare(self.task.feed(self.variant.model, feed, names)))
        if hasattr(out, "keys"):  # a transformers ModelOutput
            return {k: np.asarray(v.float().numpy(), dtype=np.float64) for k, v in out.items() if hasattr(v, "numpy")}
        outputs = getattr(self.backend, "output_names", None) or [o.name for o in self.backend.session.get_outputs()]
        return {k: np.asarray(v, dtype=np.float64) for k, v in zip(outputs, out)}

    def close(self) -> None:
        self.backend.close()
