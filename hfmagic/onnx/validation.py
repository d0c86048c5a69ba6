"""Each ONNX variant next to PyTorch on the same real examples (texts tokenized, images processed):
which examples, and how they become inputs, is the model's task's (``task.validation``, ``task.inputs``).

Figures (over every output the two share, e.g. ``logits``, ``last_hidden_state``,
``start_logits``/``end_logits``; padded positions left out):

- ``max_abs_diff``: the largest absolute difference of any output value;
- ``cosine``: the LOWEST per-text cosine similarity of the outputs (the worst text, not the mean);
- ``argmax_agreement``: for classification-like tasks, the share of decisions (class per text,
  label per token, answer start/end per text) that equal PyTorch's; None for feature-extraction.

A variant *diverges* when its worst-text cosine falls below :data:`COSINE_FLOOR` for its kind:
fp32 and O1-O3 compute the same function (measured 1 - 1e-9 on MiniLM; O3's approximate GELU
still gives > 0.9999), O4 is fp16, int8 is an approximation (0.967 per-tensor avx2 on MiniLM).
Argmax agreement is reported but not a gate: on a model whose top logits are close, a tiny
change flips a decision without being wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COSINE_FLOOR = {"float": 0.999, "fp16": 0.99, "int8": 0.9}


def floor_for(variant_name: str) -> tuple[str, float]:
    kind = "int8" if "int8" in variant_name else "fp16" if variant_name.startswith("O4") else "float"
    return kind, COSINE_FLOOR[kind]


class Reference:
    """PyTorch's outputs on some texts, computed once per export and compared with each variant.

    The inputs are what the model's task says both sides take (the tokenizer's outputs that the
    forward accepts); an ONNX graph is fed exactly its own inputs, completed as PyTorch would."""

    def __init__(self, model, texts: list, source: str):
        import numpy as np
        import torch

        self.model, self.texts, self.source = model, texts, source  # texts: the task's examples
        self.task = model.task_plugin
        torch_model = model.torch_model()
        inputs = self.task.inputs
        encoded = {k: np.asarray(v) for k, v in inputs.encode(model, texts).items()}
        self.features = inputs.feed(model, encoded, inputs.model_inputs(model, torch_model.forward))
        with torch.inference_mode():
            out = torch_model(**{k: torch.from_numpy(v) for k, v in self.features.items()})
        self.outputs = {k: v.float().numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}
        self.mask = encoded["attention_mask"].astype(bool) if "attention_mask" in encoded else None  # padding

    def compare(self, path: Path, device: str = "cpu") -> dict[str, Any]:
        """Run the ONNX file on the same inputs; the figures described in the module docstring."""
        import onnxruntime as ort

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        session = ort.InferenceSession(str(path), providers=providers)
        feed = self.task.inputs.feed(self.model, self.features, [i.name for i in session.get_inputs()])
        names = [o.name for o in session.get_outputs() if o.name in self.outputs]
        if not names:
            raise ValueError(f"none of its outputs ({', '.join(o.name for o in session.get_outputs())}) "
                             f"matches PyTorch's ({', '.join(self.outputs)})")
        got = dict(zip(names, session.run(names, feed)))
        return self._figures({n: self.outputs[n] for n in names}, got) | {
            "outputs": names, "texts": len(self.texts), "inputs_from": self.source}

    def _figures(self, want: dict, got: dict) -> dict[str, Any]:
        import numpy as np

        batch = next(iter(want.values())).shape[0]  # one row per example, whatever the task
        per_text_want = [[] for _ in range(batch)]
        per_text_got = [[] for _ in range(batch)]
        max_diff, agree, decisions = 0.0, 0, 0
        for name, w in want.items():
            g = np.asarray(got[name], dtype=np.float64)
            w = w.astype(np.float64)
            token_level = self.task.validation.token_level(name) and self.mask is not None
            decides = self.task.validation.decides(name)
            for i in range(batch):
                wi, gi = (w[i][self.mask[i]], g[i][self.mask[i]]) if token_level else (w[i], g[i])
                per_text_want[i].append(wi.ravel())
                per_text_got[i].append(gi.ravel())
                if wi.size:  # np.fmax would drop a NaN and Python's max() may too: keep it
                    max_diff = float(np.max([max_diff, np.max(np.abs(wi - gi))]))
                if decides:
                    if decides == "position":  # an answer position per text
                        agree += int(np.argmax(wi) == np.argmax(gi))
                        decisions += 1
                    else:  # a class per text, or per token
                        a, b = wi.reshape(-1, wi.shape[-1]).argmax(-1), gi.reshape(-1, gi.shape[-1]).argmax(-1)
                        agree += int((a == b).sum())
                        decisions += a.size
        cosines = [cosine_similarity(np.concatenate(a), np.concatenate(b)) for a, b in zip(per_text_want, per_text_got)]
        return {"max_abs_diff": max_diff, "cosine": float(np.min(cosines)),  # a NaN text wins, as it should
                "argmax_agreement": agree / decisions if decisions else None}


def cosine_similarity(a, b) -> float:
    """The cosine of two flat arrays: NaN when ``b`` (the variant's) holds a NaN or an infinity, 1.0
    for two zero vectors, 0.0 for one; what every validation's worst-example cosine is made of."""
    import numpy as np

    if not np.all(np.isfinite(b)):
        return float("nan")
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(np.dot(a, b) / (na * nb))


def divergence(variant_name: str, figures: dict[str, Any]) -> str | None:
    """Why a variant's figures say it diverged from PyTorch, or None when it did not."""
    kind, floor = floor_for(variant_name)
    cosine = figures.get("cosine")
    if cosine is None or not cosine >= floor:  # NaN fails too
        return (f"diverged from PyTorch: worst-text cosine {cosine:.4f} < {floor} (the floor for {kind} "
                f"variants); max |diff| {figures.get('max_abs_diff', float('nan')):.3g}")
    return None
