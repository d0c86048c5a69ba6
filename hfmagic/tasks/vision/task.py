"""Image classification (ViT, DeiT, Swin, ConvNeXt, ResNet, MobileNet style): a class per image.

What differs from the text tasks, all of it here:

- a folder needs an image processor (``preprocessor_config.json``), not a tokenizer; the model
  takes ``pixel_values`` (float32, batch x channels x height x width), made by that processor;
- a shape is batch x image size (pixels per side): %benchmark's ``--image-sizes``, by default the
  processor's own size. ViT-style models, whose position embeddings are for one size, take that
  size only; convolutional and Swin models take others;
- the export is optimum's ``image-classification``; ORTOptimizer's O1-O3 only where optimum's
  optimizer knows the architecture (ViT), so other models get fp32 and int8 by default;
- validation and the evaluator's inputs are real images (scikit-learn's handwritten digits when no
  data came with the call); figures are accuracy, top-5 accuracy and macro F1 with intervals;
- ``%load_model digits-vit``: a small ViT trained here on those digits (:mod:`hfmagic.tasks.vision.demo`).

Nothing here imports a heavy library at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from hfmagic.core.errors import UnsupportedError, UsageProblem
from hfmagic.core.records import field_of
from hfmagic.core.shapes import IMAGE_AXIS
from hfmagic.tasks import register
from hfmagic.tasks.base import Task, read_examples, require_any, write_examples
from hfmagic.tasks.protocols import Export, Inputs, Measurement, Validation
from hfmagic.tasks.vision import demo
from hfmagic.tasks.vision.evaluate import ImageClassificationEvaluator
from hfmagic.tasks.vision.images import digits, load_images
from hfmagic.tasks.vision.requests import ImageRequests

PROCESSOR_FILES = ("preprocessor_config.json",)
# position embeddings for one image size (no interpolation in the exported graph)
FIXED_SIZE = {"vit", "deit", "beit", "data2vec-vision", "yolos"}
# architectures optimum's ORTOptimizer can fuse (O1-O3); others export as fp32 and int8
OPTIMIZABLE = {"vit", "dinov2", "clip", "segformer"}
# attention-based image models: optimum's dynamic int8 (MatMul, Attention, ...) suits them
ATTENTION_MODELS = {"vit", "deit", "beit", "dinov2", "swin", "swinv2", "data2vec-vision", "yolos", "levit",
                    "mobilevit", "segformer"}


def _size_of(spec, default: int | None = None) -> int | None:
    """One side from an image processor's ``size``/``crop_size`` (an int, height/width or shortest_edge)."""
    if isinstance(spec, int):
        return spec
    if isinstance(spec, dict):
        for key in ("height", "shortest_edge", "width", "longest_edge"):
            if isinstance(spec.get(key), int):
                return spec[key]
    return default


class ImageInputs(Inputs):
    """Images through the model's image processor: batch x channels x size x size pixels (float32)."""

    AXIS = IMAGE_AXIS
    EXAMPLES = "images"
    PREPROCESSOR = "image processor"

    def preprocessor(self, model):
        """The model's image processor (transformers' AutoImageProcessor; the handle caches it)."""
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(model.path, trust_remote_code=model.trust_remote_code,
                                                  use_fast=False)  # the processor it was saved with

    def sizes(self, model) -> list[int]:
        """The processor's output size (its crop when it crops), else the config's image size."""
        spec = model.preprocessor_config
        size = _size_of(spec.get("crop_size")) if spec.get("do_center_crop") else None
        size = size or _size_of(spec.get("size")) or _size_of(model.config.get("image_size")) or 224
        return [size]

    def check_sizes(self, model, sizes: list[int], new_tokens: int = 0) -> None:
        if model.model_type in FIXED_SIZE:
            own = _size_of(model.config.get("image_size"), 224)
            other = [s for s in sizes if s != own]
            if other:
                raise UsageProblem(f"{model.name} ({model.model_type}) has position embeddings for {own} px images "
                                   f"only, not {other[0]} px; use --image-sizes {own}")
        patch = model.config.get("patch_size") or 1
        small = [s for s in sizes if s < (patch if isinstance(patch, int) else 1)]
        if small:
            raise UsageProblem(f"an image of {small[0]} px is smaller than {model.name}'s {patch} px patches; "
                               f"use --image-sizes {patch} or more")

    def memory_tokens(self, model, size: int) -> int:
        """A ViT-style model's patches (and its [CLS]); a convolutional one's first-stage positions."""
        patch = model.config.get("patch_size")
        if isinstance(patch, int) and patch > 0:
            return (size // patch) ** 2 + 1
        return max(1, (size // 4) ** 2)

    def model_inputs(self, model, forward=None) -> list[str]:
        return ["pixel_values"]

    def synthetic(self, names: list[str], shape: dict, config: dict) -> dict:
        """Normalised-looking pixels (standard normal, float32) of exactly batch x channels x size x size."""
        import numpy as np

        unknown = [n for n in names if n != "pixel_values"]
        if unknown:
            raise UnsupportedError(f"the model takes {', '.join(unknown)}, which the {self.task.NAME} task cannot "
                                   "make up (it makes pixel_values)")
        batch, size = shape["batch_size"], shape[self.AXIS.key]
        rng = np.random.default_rng(batch * 100_003 + size)
        channels = int(config.get("num_channels") or 3)
        return {"pixel_values": rng.standard_normal((batch, channels, size, size), dtype=np.float32)}

    def encode(self, model, images: list, size: int | None = None) -> dict:
        """``images`` (PIL images) as pixel_values: the processor as it is, or at ``size`` pixels per
        side (resized here first, then the processor's rescale and normalisation without its resize)."""
        import numpy as np

        processor = model.preprocessor()
        channels = int(getattr(processor, "num_channels", 0) or (model.config.get("num_channels") if size is None
                                                                 else None) or 3)
        mode = "L" if channels == 1 else "RGB"
        pictures = [im.convert(mode) for im in images]
        if size is None or size == _size_of(getattr(processor, "crop_size", None) if getattr(
                processor, "do_center_crop", False) else getattr(processor, "size", None)):
            out = processor(images=pictures, return_tensors="np")
        else:
            pictures = [im.resize((size, size)) for im in pictures]
            out = processor(images=pictures, return_tensors="np", do_resize=False, do_center_crop=False)
        pixels = np.asarray(out["pixel_values"], dtype=np.float32)
        if pixels.ndim == 3:  # a one-channel processor output without its channel axis
            pixels = pixels[:, None]
        return {"pixel_values": pixels}

    def complete(self, names: list[str], encoded: dict) -> dict:
        import numpy as np

        return {n: np.asarray(encoded[n], dtype=np.float32) for n in names}

    def read(self, model, source, column: str | None = None, limit: int | None = None):
        return load_images(source, image_column=column, limit=limit, require_labels=False)

    def examples(self, data) -> list | None:
        return getattr(data, "images", None)

    def samples(self, model, count: int) -> tuple[list, str]:
        return digits().images[:count], "scikit-learn's handwritten digits"

    def payload(self, data, limit: int):
        import numpy as np

        return write_examples([np.asarray(im) for im in data.images[:limit]], data.fingerprint["sha256"])

    def from_payload(self, payload):
        from PIL import Image

        return None if payload is None else [Image.fromarray(a) for a in read_examples(payload)]

    def note(self, data) -> str:
        return (f"inputs: {len(data)} real images from {data.source}, resized to each image size and normalised "
                "by the model's image processor")


class ImageMeasurement(Measurement):
    """A forward pass per run; samples/s is images/s."""

    def columns(self, columns: list) -> list:
        return [field_of("samples_per_s").column("images/s") if c.key == "samples_per_s" else c
                for c in super().columns(columns)]


class ImageExport(Export):
    """ORTOptimizer's levels where optimum fuses the architecture (ViT), fp32 and int8 for the others."""

    LEVELS: ClassVar[tuple[str, ...]] = ("fp32", "O1", "O2", "O3", "O4")
    DEFAULT_LEVELS: ClassVar[tuple[str, ...]] = ("fp32", "O2")

    def quant_operators(self, model) -> tuple[str, ...] | None:
        """Convolutional models: the weights of their MatMuls only (ConvNeXt's pointwise layers, the
        heads). Dynamic int8 of a Conv is ConvInteger, which onnxruntime runs slower than the fp32
        Conv (a tiny ConvNeXt here: 2.5x slower); static int8 (--quantize static --calibration
        IMAGES) quantizes the convolutions properly. Transformer-style models: optimum's default."""
        return None if model.model_type in ATTENTION_MODELS else ("MatMul",)

    def default_levels(self, model=None) -> tuple[str, ...]:
        if model is not None and model.model_type not in OPTIMIZABLE:
            return ("fp32",)
        return self.DEFAULT_LEVELS

    def steps(self, levels: list[str], quantize: str, static: bool, options: dict) -> list:
        model = options.get("model")
        if model is not None and model.model_type not in OPTIMIZABLE:
            fused = [lv for lv in levels if lv != "fp32"]
            if fused:
                raise UnsupportedError(f"ORTOptimizer cannot optimize a {model.model_type} model ({', '.join(fused)}); "
                                       f"it optimizes {', '.join(sorted(OPTIMIZABLE))}: use --levels fp32 (and int8)")
        return super().steps(levels, quantize, static, options)


class ImageValidation(Validation):
    def decides(self, output: str) -> str | None:
        return "class" if output == "logits" else None


@register
class ImageClassification(Task):
    NAME = "image-classification"
    EXPORT_TASK = "image-classification"
    AUTO_CLASS = "AutoModelForImageClassification"
    ARCHITECTURES = ("ForImageClassification", "ForImageClassificationWithTeacher")
    MODALITY = "image"
    LABELLED = True
    DESCRIPTION = "a class per image"
    DEFAULT_METRICS = ("accuracy", "top5", "f1_macro")
    CLASSICAL_BASELINE = "no classical image baseline yet"
    Inputs = ImageInputs
    Measurement = ImageMeasurement
    Export = ImageExport
    Validation = ImageValidation
    Requests = ImageRequests
    SOURCES = (demo.SOURCE,)

    @classmethod
    def fits_modality(cls, config: dict) -> bool:
        return "num_channels" in config and "vocab_size" not in config

    def check_folder(self, path: Path) -> None:
        require_any(path, PROCESSOR_FILES, "image processor (no preprocessor_config.json)",
                    "save it beside them: image_processor.save_pretrained(folder)")

    def card_lines(self, model) -> list[tuple[str, str]]:
        c = model.config
        lines = [("image size", f"{self.inputs.sizes(model)[0]} px (its image processor's)"),
                 ("channels", str(c.get("num_channels")))]
        if c.get("patch_size"):
            lines.append(("patch size", f"{c['patch_size']} px"))
        return lines

    def evaluator(self):
        return ImageClassificationEvaluator(self)
