"""Transcribed audio from wherever it lives: a folder with a transcript file, a Dataset, built-in clips.

:func:`load_audio` returns :class:`AudioData`: mono float32 waveforms at the model's sampling rate
(resampled with scipy's polyphase filter when the files differ), their reference transcripts,
where they came from and a fingerprint of exactly what was read. It reads

- ``"librivox"``: Debian's ``pocketsphinx-testdata`` (5 LibriVox clips of *Sense and Sensibility*,
  16 kHz mono, 3-7 s, with their transcripts), found where ``HFMAGIC_LIBRIVOX`` says, else where
  the package puts them;
- a folder of audio files (wav, flac, ogg; soundfile reads them) with a transcript file beside
  them: ``transcripts.txt``/``.tsv`` (``name<TAB>transcript`` lines, the name with or without its
  suffix) or Sphinx's ``transcription`` (``<s> words </s> (name)`` lines);
- a datasets Dataset or pandas DataFrame with an audio column (datasets' Audio dicts with
  ``array`` and ``sampling_rate``, file paths, or arrays at the model's rate) and a text column.

Every bad input (no audio, a transcript that names no file or a file without a transcript, more
than one channel, a rate below 8 kHz) is a :class:`~hfmagic.core.errors.DataError` in one line.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfmagic.core.errors import DataError, UsageProblem
from hfmagic.data.tables import pick_column
from hfmagic.tasks.base import file_bytes

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
TRANSCRIPT_FILES = ("transcripts.txt", "transcripts.tsv", "transcript.txt", "transcription", "metadata.tsv")
AUDIO_COLUMNS = ("audio", "speech", "path", "file")
TEXT_COLUMNS = ("text", "sentence", "transcript", "transcription", "normalized_text")
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")  # where Debian's package puts them
LIBRIVOX_ENV = "HFMAGIC_LIBRIVOX"  # another folder of the same clips (or none: a path that is not there)
MIN_RATE = 8000
_SPHINX = re.compile(r"^\s*(?:<s>)?\s*(.*?)\s*(?:</s>)?\s*\(([^()]+)\)\s*$")


@dataclass
class AudioData:
    """Mono waveforms (float32, at ``rate``) and their transcripts, with their source and fingerprint."""

    audio: list
    texts: list[str] | None
    rate: int
    source: str
    fingerprint: dict
    names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    caption: str | None = None

    def __len__(self) -> int:
        return len(self.audio)

    def seconds(self) -> float:
        return sum(len(a) for a in self.audio) / self.rate

    def __repr__(self) -> str:
        return f"<AudioData {self.source}: {len(self)} clips, {self.seconds():.1f} s at {self.rate} Hz>"


def load_audio(source: Any, rate: int, split: str | None = None, audio_column: str | None = None,
               text_column: str | None = None, limit: int | None = None, require_text: bool = True) -> AudioData:
    """Read audio (and transcripts) from ``source`` at ``rate`` Hz; see the module docstring."""
    if limit is not None and limit <= 0:
        raise UsageProblem(f"--limit must be a positive number of examples, got {limit}")
    if isinstance(source, AudioData):
        data = source if source.rate == rate else _resampled(source, rate)
    elif isinstance(source, str) and source == "librivox":
        if not librivox_folder().exists():
            raise DataError(f"librivox comes from Debian's pocketsphinx-testdata package, which is not installed "
                            f"(no {librivox_folder()}): sudo apt-get install pocketsphinx-testdata, or make data; or "
                            "give your own audio: a folder of audio files with a transcripts.txt (name<TAB>text)")
        data = _from_folder(librivox_folder(), rate, "librivox (pocketsphinx-testdata)")
    elif isinstance(source, (str, Path)):
        data = _from_folder(Path(source).expanduser(), rate)
    else:
        data = _from_table(source, rate, split, audio_column, text_column, require_text)
    if limit is not None and limit < len(data):
        texts = None if data.texts is None else data.texts[:limit]
        label = f"{data.source} (first {limit})"
        data = AudioData(data.audio[:limit], texts, rate, label, fingerprint(data.audio[:limit], texts, rate, label),
                         data.names[:limit], list(data.notes), data.caption)
    return data


def librivox_folder() -> Path:
    """Where the LibriVox clips are read from: ``$HFMAGIC_LIBRIVOX``, else Debian's package's folder."""
    return Path(os.environ.get(LIBRIVOX_ENV) or LIBRIVOX)


def synthetic_clips(rate: int, count: int) -> list:
    """``count`` clips of 1.5 to 3 s (float32 at ``rate``): voiced-like tones (a fundamental
    gliding over 100-250 Hz with its harmonics) in quiet noise, the same in every process: what
    a speech variant is checked against PyTorch on when no real speech is at hand."""
    import numpy as np

    rng = np.random.default_rng(0)
    clips = []
    for i in range(count):
        t = np.arange(int(rate * (1.5 + 1.5 * i / max(1, count - 1)))) / rate
        pitch = 100 + 150 * (0.5 + 0.5 * np.sin(2 * np.pi * (0.3 + 0.2 * i) * t))
        phase = 2 * np.pi * np.cumsum(pitch) / rate
        wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
        clips.append((0.2 * wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    return clips


def _from_folder(path: Path, rate: int, label: str | None = None) -> AudioData:
    if not path.exists():
        raise DataError(f"no folder at {path}; give a folder of audio files with a transcripts.txt "
                        "(name<TAB>text lines), a Dataset with audio and text columns, or librivox")
    if not path.is_dir():
        raise DataError(f"{path} is a file; give the folder that holds the audio files and their transcripts.txt")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DataError(f"{path} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    transcripts = _transcripts(path)
    by_stem = {p.stem: p for p in files} | {p.name: p for p in files}
    unknown = [n for n in transcripts if n not in by_stem]
    if unknown:
        raise DataError(f"the transcript file names {unknown[0]!r}, which is not an audio file in {path}; "
                        "make its names match the files (with or without the suffix)")
    named = {by_stem[n]: t for n, t in transcripts.items()}
    missing = [p.name for p in files if p not in named]
    if missing:
        raise DataError(f"{missing[0]} has no transcript in {path}'s transcript file ({len(missing)} of {len(files)} "
                        "files have none); add a line for each, or move the file out")
    audio = [_read(p, rate) for p in files]
    texts = [named[p] for p in files]
    label = label or str(path)
    resampled = _note_rates(files, rate)
    return AudioData(audio, texts, rate, label, fingerprint(audio, texts, rate, label), [p.name for p in files],
                     resampled)


def _transcripts(path: Path) -> dict[str, str]:
    found = next((path / n for n in TRANSCRIPT_FILES if (path / n).is_file()), None)
    if found is None:
        raise DataError(f"{path} has audio but no transcript file ({', '.join(TRANSCRIPT_FILES)}: name<TAB>text "
                        "lines, or Sphinx's '<s> text </s> (name)')")
    out: dict[str, str] = {}
    for number, line in enumerate(found.read_text().splitlines(), 1):
        if not line.strip():
            continue
        sphinx = _SPHINX.match(line)
        if sphinx and "\t" not in line:
            text, name = sphinx.group(1), sphinx.group(2).strip()
        elif "\t" in line:
            name, text = line.split("\t", 1)
        else:
            raise DataError(f"{found.name} line {number} is neither 'name<TAB>text' nor '<s> text </s> (name)'")
        out[name.strip()] = " ".join(text.split())
    return out


def _read(path, rate: int, name: str | None = None):
    """A mono waveform at ``rate`` from a file (or a file-like object of its bytes, called ``name``)."""
    import numpy as np
    import soundfile

    name = name or Path(path).name
    try:
        wave, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile's errors name no class of their own
        where = name if not isinstance(path, (str, Path)) else path
        raise DataError(f"{where} is not audio soundfile can read ({str(exc).splitlines()[0][:120]})") from None
    if wave.shape[1] != 1:
        raise DataError(f"{name} has {wave.shape[1]} channels; hfmagic takes mono audio: mix it down first "
                        "(for example: sox in.wav -c 1 out.wav)")
    if file_rate < MIN_RATE:
        raise DataError(f"{name} is sampled at {file_rate} Hz, below the {MIN_RATE} Hz speech needs; "
                        "record or export it at 16 kHz")
    return _resample(np.ascontiguousarray(wave[:, 0]), file_rate, rate)


def decode(value, rate: int):
    """A request's audio (a file's bytes, or them in base64, a data: URI too) as a waveform at ``rate``."""
    import io


    raw = file_bytes(value, 'audio (a wav, flac or ogg: {"inputs": "UklGR..."})')
    return _read(io.BytesIO(raw), rate, "the request's audio")


def encode(wave, rate: int) -> str:
    """A waveform as a 16-bit WAV file's bytes in base64 (what a load test sends)."""
    import base64
    import io

    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, wave, rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(buffer.getvalue()).decode()


def _note_rates(files: list[Path], rate: int) -> list[str]:
    import soundfile

    rates = sorted({soundfile.info(p).samplerate for p in files} - {rate})
    return [f"resampled from {', '.join(map(str, rates))} Hz to the model's {rate} Hz"] if rates else []


def _resample(wave, file_rate: int, rate: int):
    import numpy as np

    if file_rate == rate:
        return wave.astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(file_rate), int(rate))
    return resample_poly(wave, rate // g, file_rate // g).astype(np.float32)


def _resampled(data: AudioData, rate: int) -> AudioData:
    audio = [_resample(a, data.rate, rate) for a in data.audio]
    return AudioData(audio, data.texts, rate, data.source, fingerprint(audio, data.texts, rate, data.source),
                     data.names, data.notes + [f"resampled from {data.rate} Hz to the model's {rate} Hz"], data.caption)


def _from_table(table, rate: int, split, audio_column, text_column, require_text: bool) -> AudioData:
    import numpy as np

    pd, datasets = sys.modules.get("pandas"), sys.modules.get("datasets")
    if datasets is not None and isinstance(table, datasets.DatasetDict):
        if split is None or split not in table:
            raise DataError(f"this DatasetDict has splits {', '.join(table)}; pass --split one of them")
        table = table[split]
    if datasets is not None and isinstance(table, datasets.Dataset):
        columns, label = list(table.column_names), f"<Dataset {len(table)} rows>"
    elif pd is not None and isinstance(table, pd.DataFrame):
        columns, label = list(table.columns), f"<DataFrame {len(table)} rows>"
    else:
        raise DataError(f"cannot read audio from a {type(table).__name__}; give a folder of audio files with a "
                        "transcripts.txt, a Dataset or DataFrame with audio and text columns, or librivox")
    audio_column = pick_column(columns, audio_column, AUDIO_COLUMNS, "audio", "--audio-column")
    audio, notes = [], set()
    for i, cell in enumerate(list(table[audio_column])):
        if isinstance(cell, dict) and "array" in cell:  # datasets' Audio feature
            wave = np.asarray(cell["array"], dtype=np.float32)
            if wave.ndim != 1:
                raise DataError(f"row {i}'s audio has {wave.shape[0]} channels; hfmagic takes mono audio")
            if cell.get("sampling_rate") and cell["sampling_rate"] != rate:
                notes.add(f"resampled from {cell['sampling_rate']} Hz to the model's {rate} Hz")
            audio.append(_resample(wave, int(cell.get("sampling_rate") or rate), rate))
        elif isinstance(cell, (str, Path)):
            audio.append(_read(Path(cell), rate))
        else:
            wave = np.asarray(cell, dtype=np.float32)
            if wave.ndim != 1 or wave.size == 0:
                raise DataError(f"row {i}'s audio is not a mono waveform (shape {wave.shape}); give 1-d arrays at "
                                f"{rate} Hz, datasets Audio cells or file paths")
            audio.append(wave)
    texts = None
    if text_column or require_text:
        text_column = pick_column(columns, text_column, TEXT_COLUMNS, "transcript", "--text-column")
        texts = [" ".join(str(t).split()) for t in table[text_column]]
    return AudioData(audio, texts, rate, label, fingerprint(audio, texts, rate, label),
                     [f"row {i}" for i in range(len(audio))], sorted(notes))


def fingerprint(audio: list, texts: list | None, rate: int, source: str) -> dict:
    """sha256 of every waveform's samples (float32) and of the transcripts, in order."""
    import numpy as np

    digest = hashlib.sha256(str(rate).encode())
    for wave in audio:
        digest.update(np.asarray(wave, dtype=np.float32).tobytes())
    digest.update(repr(texts).encode())
    return {"sha256": digest.hexdigest(), "rows": len(audio), "columns": ["audio", "text"], "source": source,
            "split": None}
