"""One variant loaded on the backend %benchmark measures it with, run batch by batch for its
outputs: what %evaluate (here, or as a cluster's shard) scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hfmagic.backends import default_backends, get_backend
from hfmagic.core.config import settings

if TYPE_CHECKING:
    from hfmagic.models.variants import Variant


class Runner:
    """One variant loaded on the backend %benchmark measures it with (an ONNX file: onnxruntime
    unless ``backend`` says openvino); named outputs per batch."""

    def __init__(self, variant: Variant, threads: int | None = None, backend: str | None = None):

        self.variant, self.task = variant, variant.model.task_plugin
        name = (backend or "onnxruntime") if variant.kind == "onnx" else default_backends(variant.kind)[0]
        self.backend = get_backend(name)()
        self.backend.load(variant, threads or settings().resolved_threads())

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        model = self.variant.model
        own = self.task.measurement.forward_outputs(self.backend, model, feed)
        if own is not None:  # the task computes its outputs itself (a decoder's token log-likelihoods)
            return own
        names = self.backend.input_names
        if not model.kind.READS_EXAMPLES:  # a classical baseline is given the texts themselves
            feed = self.task.inputs.feed(model, feed, names)
        out = self.backend.run(self.backend.prepare(feed))
        if hasattr(out, "keys"):  # a transformers ModelOutput
            return {k: np.asarray(v.float().numpy(), dtype=np.float64) for k, v in out.items() if hasattr(v, "numpy")}
        outputs = getattr(self.backend, "output_names", None) or [o.name for o in self.backend.session.get_outputs()]
        return {k: np.asarray(v, dtype=np.float64) for k, v in zip(outputs, out)}

    def close(self) -> None:
        self.backend.close()
