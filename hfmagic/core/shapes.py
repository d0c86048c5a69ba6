"""The shape of one measurement: a batch and one size axis, the task's (tokens per sequence, pixels
per side, seconds of audio). Rows carry the axis under its own key; every view reads it here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Axis:
    """A shape's second axis (the first is always the batch): the key rows carry it under, the
    table's label for it, %benchmark's argument and flag for it, and its noun in messages."""

    key: str      # the rows' key: seq_len, image_size
    label: str    # the table's column title
    argument: str  # benchmark()'s keyword argument (a list of values)
    flag: str     # %benchmark's flag
    noun: str     # "sequence length"
    short: str    # "seq": a size in messages ("batch 8 x seq 128")
    unit: str = ""  # shown after a value ("px")

    def shape(self, batch: int, size) -> str:
        return f"{batch}x{size}{self.unit}"

    def describe(self, size) -> str:
        return f"{self.short} {size}{self.unit}"

    def compact(self, batch: int, size) -> str:
        """The run store's label: ``b8 s128`` (tokens), ``b8 224px`` (pixels)."""
        return f"b{batch} {'' if self.unit else self.short[0]}{size}{self.unit}"


TEXT_AXIS = Axis("seq_len", "seq", "seq_lens", "--seq-lens", "sequence length", "seq")
IMAGE_AXIS = Axis("image_size", "image px", "image_sizes", "--image-sizes", "image size", "image", "px")
AUDIO_AXIS = Axis("audio_seconds", "audio s", "audio_seconds", "--audio-seconds", "audio length", "audio", "s")
AXES = (TEXT_AXIS, IMAGE_AXIS, AUDIO_AXIS)  # every second axis a row may carry (results.shape_of reads them)


def shape_of(row: dict) -> tuple:
    """(batch, size) of a benchmark row, whichever size axis its task declared (seq_len, image_size),
    and a generation's new tokens third (``--new-tokens 16,64`` measures one prompt twice)."""
    shape = row.get("batch_size"), next((row[a.key] for a in AXES if row.get(a.key) is not None), None)
    return shape if row.get("new_tokens") is None else (*shape, row["new_tokens"])


def shape_key(row: dict) -> str:
    """A row's shape in its id: ``8x128``, ``8x224``, ``1x128+64`` (js/dashboard.js's shapeKey)."""
    batch, size, *new = shape_of(row)
    return f"{batch}x{size}" + "".join(f"+{n}" for n in new)


def shape_text(row: dict, compact: bool = False) -> str:
    """A row's shape as people read it: ``8x128`` (tokens), ``8x224px`` (an image's side), ``1x128+64``
    (a prompt of 128 and 64 new tokens); compact: the run store's ``b8 s128``, ``b8 224px``, ``b1 s128 n64``."""
    axis = next((a for a in AXES if row.get(a.key) is not None), AXES[0])
    text = (axis.compact if compact else axis.shape)(row.get("batch_size"), row.get(axis.key))
    new = row.get("new_tokens")
    return text if new is None else f"{text} n{new}" if compact else f"{text}+{new}"
