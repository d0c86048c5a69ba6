"""Labelled images from wherever they live: a folder, a DataFrame or Dataset, arrays, built-in sets.

:func:`load_images` returns :class:`ImageData`: PIL images, their labels, where they came from and a
fingerprint of exactly what was read (the pixels and labels, hashed). It reads

- ``"digits"``: scikit-learn's handwritten digits (1,797 8x8 grey images, 10 classes, shipped with
  scikit-learn); ``"fashion-mnist"``: Debian's ``dataset-fashion-mnist`` (its 10,000 test images;
  ``split="train"`` for the 60,000);
- a folder of class folders (``label/xxx.png``; png, jpg, jpeg, bmp, gif, webp, tif);
- a pandas DataFrame or datasets Dataset with an image column (PIL images, arrays or file paths)
  and a label column;
- a tuple ``(images, labels)`` of arrays (n x h x w, or n x h x w x channels).

Every bad input is a :class:`~hfmagic.core.errors.DataError` that says what to pass instead.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfmagic.core.errors import DataError, UsageProblem
from hfmagic.data.tables import pick_column
from hfmagic.tasks.base import file_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IMAGE_COLUMNS = ("image", "img", "picture", "pixel_values", "path", "file")
LABEL_COLUMNS = ("label", "labels", "target", "class", "category", "y")
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # where Debian's package puts its IDX files
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot"]
BUILT_IN = ("digits", "fashion-mnist")


@dataclass
class ImageData:
    """Images (PIL) and (when asked for) labels, with where they came from and a fingerprint."""

    images: list
    labels: list | None
    source: str
    fingerprint: dict
    image_column: str | None = None
    label_column: str | None = None
    label_names: list[str] | None = None  # what integer labels stand for, when the source names them
    notes: list[str] = field(default_factory=list)
    caption: str | None = None
    names: list[str] | None = None  # each image's file name or row, shown with a flip

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"<ImageData {self.source}: {len(self)} images>"


def load_images(source: Any, split: str | None = None, image_column: str | None = None,
                label_column: str | None = None, limit: int | None = None,
                require_labels: bool = True) -> ImageData:
    """Read images (and labels) from ``source``; see the module docstring for what it may be."""
    if limit is not None and limit <= 0:
        raise UsageProblem(f"--limit must be a positive number of examples, got {limit}")
    if isinstance(source, ImageData):
        data = source
    elif isinstance(source, str) and source in BUILT_IN:
        data = digits() if source == "digits" else fashion_mnist(split)
    elif isinstance(source, tuple) and len(source) == 2:
        data = _from_arrays(*source)
    elif isinstance(source, (str, Path)):
        data = _from_folder(Path(source).expanduser())
    else:
        data = _from_table(source, split, image_column, label_column, require_labels)
    if require_labels and data.labels is None:
        raise DataError(f"{data.source} has no labels; give a label column (--label-column) or class folders")
    if limit is not None and limit < len(data):
        data = ImageData(data.images[:limit], None if data.labels is None else data.labels[:limit],
                         f"{data.source} (first {limit})", fingerprint(data.images[:limit],
                         None if data.labels is None else data.labels[:limit], f"{data.source} (first {limit})"),
                         data.image_column, data.label_column, data.label_names, list(data.notes), data.caption,
                         None if data.names is None else data.names[:limit])
    return data


# -- built-in sets ----------------------------------------------------------------------------
def digits() -> ImageData:
    """scikit-learn's handwritten digits: 1,797 8x8 grey images (0-16, scaled to 0-255), labels 0-9."""
    import numpy as np
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    return _from_arrays(pixels, bunch.target.tolist(), "scikit-learn's digits",
                        [str(n) for n in bunch.target_names])


def fashion_mnist(split: str | None = None) -> ImageData:
    """Debian's dataset-fashion-mnist: the 10,000 test images (``split="train"``: the 60,000)."""
    import numpy as np

    split = split or "test"
    if split not in ("train", "test"):
        raise DataError(f"fashion-mnist has a train and a test split, not {split!r}")
    stem = "train" if split == "train" else "t10k"
    images, labels = (_find_idx(f"{stem}-images-idx3-ubyte"), _find_idx(f"{stem}-labels-idx1-ubyte"))
    pixels = np.frombuffer(gzip.open(images).read(), np.uint8, offset=16).reshape(-1, 28, 28)
    ids = np.frombuffer(gzip.open(labels).read(), np.uint8, offset=8).tolist()
    return _from_arrays(pixels, ids, f"fashion-mnist ({split})", FASHION_LABELS)


def _find_idx(stem: str) -> Path:
    for folder in (FASHION_MNIST, Path("/usr/share/dataset-fashion-mnist")):
        for name in (f"{stem}.gz", stem):
            if (folder / name).exists():
                return folder / name
    hits = sorted(Path("/usr/share").glob(f"**/{stem}*")) if Path("/usr/share").exists() else []
    if hits:
        return hits[0]
    raise DataError("fashion-mnist needs Debian's dataset-fashion-mnist package "
                    "(sudo apt-get install dataset-fashion-mnist, or make install)")


# -- arrays, folders, tables --------------------------------------------------------------------
def _from_arrays(images, labels, source: str = "<arrays>", label_names=None) -> ImageData:
    import numpy as np

    pixels = np.asarray(images)
    if pixels.ndim not in (3, 4) or (pixels.ndim == 4 and pixels.shape[-1] not in (1, 3, 4)):
        raise DataError(f"images as arrays must be n x height x width (grey) or n x height x width x channels "
                        f"(1, 3 or 4), got shape {pixels.shape}")
    labels = list(np.asarray(labels).tolist()) if labels is not None else None
    if labels is not None and len(labels) != len(pixels):
        raise DataError(f"{len(pixels)} images but {len(labels)} labels; give one label per image")
    pictures = [_to_pil(p, i) for i, p in enumerate(pixels)]
    if source == "<arrays>":
        source = f"<arrays {len(pictures)} images>"
    return ImageData(pictures, labels, source, fingerprint(pictures, labels, source), label_names=label_names,
                     names=[f"#{i}" for i in range(len(pictures))])


def _from_folder(path: Path) -> ImageData:
    if not path.exists():
        raise DataError(f"no folder at {path}; give a folder of class folders (label/xxx.png), a DataFrame, "
                        f"a Dataset, (images, labels) arrays, or one of {', '.join(BUILT_IN)}")
    if not path.is_dir():
        raise DataError(f"{path} is a file; give a folder of class folders (label/xxx.png)")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}); give a folder of class folders "
                        "(label/xxx.png)")
    loose = [p for p in files if p.parent == path]
    if loose:
        raise DataError(f"{path} has images outside class folders ({loose[0].name}); put each image in a folder "
                        "named after its label (label/xxx.png)")
    pictures = [_open(p) for p in files]
    labels = [p.relative_to(path).parts[0] for p in files]
    return ImageData(pictures, labels, str(path), fingerprint(pictures, labels, str(path)),
                     names=[str(p.relative_to(path)) for p in files])


def _from_table(table, split, image_column, label_column, require_labels: bool) -> ImageData:
    pd = sys.modules.get("pandas")
    datasets = sys.modules.get("datasets")
    if datasets is not None and isinstance(table, datasets.DatasetDict):
        if split is None:
            raise DataError(f"this DatasetDict has splits {', '.join(table)}; pass --split one of them")
        if split not in table:
            raise DataError(f"no split {split!r}; this DatasetDict has {', '.join(table)}")
        table = table[split]
    if datasets is not None and isinstance(table, datasets.Dataset):
        names = {c: f.names for c, f in table.features.items() if hasattr(f, "names")}
        columns, label = list(table.column_names), f"<Dataset {len(table)} rows>"
        get = lambda c: list(table[c])  # noqa: E731
    elif pd is not None and isinstance(table, pd.DataFrame):
        names, columns, label = {}, list(table.columns), f"<DataFrame {len(table)} rows>"
        get = lambda c: list(table[c])  # noqa: E731
    else:
        raise DataError(f"cannot read images from a {type(table).__name__}; give a folder of class folders, a "
                        f"DataFrame or Dataset with an image column, (images, labels) arrays, or one of "
                        f"{', '.join(BUILT_IN)}")
    image_column = pick_column(columns, image_column, IMAGE_COLUMNS, "image", "--image-column")
    values = get(image_column)
    pictures = [_to_pil(v, i) for i, v in enumerate(values)]
    labels = None
    if label_column or require_labels:
        label_column = pick_column(columns, label_column, LABEL_COLUMNS, "label", "--label-column")
        labels = get(label_column)
    return ImageData(pictures, labels, label, fingerprint(pictures, labels, label), image_column, label_column,
                     names.get(label_column), names=[f"row {i}" for i in range(len(pictures))])


def _to_pil(value, where):
    """One image as PIL: a PIL image, an array (h x w, h x w x c; 0-255, or 0-1 floats) or a path."""
    import numpy as np
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, (str, Path)):
        return _open(Path(value))
    if isinstance(value, dict) and ("bytes" in value or "path" in value):  # a datasets Image() cell, undecoded
        import io

        return _open(Path(value["path"])) if value.get("bytes") is None else Image.open(io.BytesIO(value["bytes"]))
    pixels = np.asarray(value)
    if pixels.ndim == 3 and pixels.shape[0] in (1, 3) and pixels.shape[-1] not in (1, 3, 4):
        pixels = pixels.transpose(1, 2, 0)  # channels first
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (2, 3) or pixels.size == 0:
        raise DataError(f"image {where} is not an image (an array of shape {pixels.shape}); give PIL images, "
                        "h x w (x c) arrays or file paths")
    if pixels.dtype.kind == "f":
        pixels = np.clip(pixels * (255 if pixels.max(initial=0) <= 1.0 else 1), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise DataError(f"no image at {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path} is not an image that can be read ({type(exc).__name__}); remove it or "
                        "replace it with a png or jpg") from None


def decode(value):
    """A request's image (a file's bytes, or them in base64, a data: URI too) as PIL."""
    import io

    from PIL import Image, UnidentifiedImageError


    raw = file_bytes(value, 'an image (a png or jpg: {"inputs": "iVBORw0..."})')
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UsageProblem(f"the request's image cannot be read ({type(exc).__name__}); send a png or jpg") from None


def encode(image) -> str:
    """An image as a PNG file's bytes in base64 (what a load test sends)."""
    import base64
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def fingerprint(images: list, labels: list | None, source: str) -> dict:
    """sha256 of every image's size, mode and pixels and of the labels, in order."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
    digest.update(repr(labels).encode())
    return {"sha256": digest.hexdigest(), "rows": len(images), "columns": ["image", "label"], "source": source,
            "split": None}
