"""What %evaluate does for image classification (see :class:`hfmagic.tasks.base.Evaluator`).

Accuracy, top-5 accuracy and macro F1 (scikit-learn's formulas; top-5: the share of images whose
label is among the five highest logits, or all of them for a model of fewer classes), each with a
percentile-bootstrap interval over the images, the same resamples for every variant. Images go
through the model's own image processor in batches; a flip is an image whose class changed, kept
with a thumbnail (``flip_images``) for the notebook.
"""

from __future__ import annotations

import numpy as np

from hfmagic.data.labels import label_ids, read_label_map
from hfmagic.data.metrics import Metric, bootstrap, resolve
from hfmagic.tasks.base import EvalData
from hfmagic.tasks.classes import ClassificationEvaluator
from hfmagic.tasks.vision.images import ImageData, load_images

TOP_K = 5
THUMBNAIL_PX = 48


class ImageClassificationEvaluator(ClassificationEvaluator):
    FLIP_COLUMNS = ("variant", "row", "image", "label", "reference", "prediction", "confidence",
                    "reference_confidence")
    EXTRA = ("top5",)
    PADDING = "images at the processor's size: nothing padded"

    def metrics(self, names, model):
        """Top-5 here; the label metrics (accuracy, f1_macro, ...) as text classification resolves them."""

        names = list(names or self.task.DEFAULT_METRICS)
        label = iter(resolve([n for n in names if n not in self.EXTRA]) if set(names) - set(self.EXTRA) else [])
        return [Metric(n, "topk") if n in self.EXTRA else next(label) for n in names]

    def read(self, model, data, options: dict) -> EvalData:

        if isinstance(data, str) and data == model.source and isinstance(model.dataset, ImageData):
            data = model.dataset  # a built-in model's own held-out split
        label_map = read_label_map(options.get("label_map"))
        images = load_images(data, split=options.get("split"), image_column=options.get("image_column"),
                             label_column=options.get("label_column"), limit=options.get("limit"))
        y_true = np.asarray(label_ids(images, model.labels, label_map))
        return EvalData({"data": images, "y_true": y_true}, len(images), images.source, images.fingerprint,
                        images.notes, images.caption,
                        {"image_column": images.image_column, "label_column": images.label_column,
                         "label_map": label_map})

    def batches(self, model, data: EvalData, batch_size: int) -> list:
        images = data.examples["data"].images
        inputs = model.task_plugin.inputs
        return [(np.arange(i, min(i + batch_size, len(images))), inputs.encode(model, images[i:i + batch_size]))
                for i in range(0, len(images), batch_size)]

    def score(self, data, prediction, metrics) -> dict:
        label = [m for m in metrics if m.kind != "topk"]
        row = super().score(data, prediction, label) if label else {}
        y_true, logits = data.examples["y_true"], prediction["logits"]
        for metric in (m for m in metrics if m.kind == "topk"):
            k = min(TOP_K, logits.shape[1])
            top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
            hits = (top == y_true[:, None]).any(1).astype(int)
            row[metric.name] = float(hits.mean())  # top-5 accuracy is the accuracy of "label in the top five"
            row[f"{metric.name}_low"], row[f"{metric.name}_high"] = bootstrap(
                Metric("accuracy", "label"), np.ones_like(hits), hits, 2)
        return {name: row[name] for m in metrics for name in (m.name, f"{m.name}_low", f"{m.name}_high")}

    def example(self, data, i: int) -> dict:
        images = data.examples["data"]
        return {"image": (images.names or [f"#{k}" for k in range(len(images))])[i],
                "thumbnail": thumbnail(images.images[i])}

def thumbnail(image) -> str:
    """A small PNG of ``image`` as a data URI (the flips' table shows it in a notebook)."""
    import base64
    import io

    small = image.convert("RGB")
    scale = THUMBNAIL_PX / max(small.size)
    small = small.resize((max(1, round(small.width * scale)), max(1, round(small.height * scale))), 0)  # nearest
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

