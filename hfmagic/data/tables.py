"""Labelled (or plain) text data from wherever it lives: a DataFrame, a Dataset, a file, the hub, the demo.

:func:`load_data` returns :class:`LabelledData`: the texts, their labels, where they came from and a
fingerprint of exactly what was read (recorded with every evaluation, and with benchmark runs on
real inputs). Columns are guessed when the choice is obvious and must be named otherwise; every
bad input is a :class:`~hfmagic.core.errors.DataError` that says what to pass instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hfmagic.core.errors import DataError, OfflineError, UsageProblem

# the one of these present (any case) is taken; otherwise the only text column; otherwise (none, or
# more than one of them) ask
TEXT_COLUMNS = ("text", "sentence", "content", "review", "document", "body", "article", "tweet",
                "comment", "message", "utterance", "abstract")
LABEL_COLUMNS = ("label", "labels", "target", "category", "class", "sentiment", "intent", "topic", "y")
READERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
HUB_TIMEOUT_S = 3.0


@dataclass
class LabelledData:
    """Texts and (when asked for) labels, with where they came from and a fingerprint of them."""

    texts: list[str]
    labels: list | None
    source: str
    fingerprint: dict
    text_column: str | None = None
    label_column: str | None = None
    label_names: list[str] | None = None  # a datasets ClassLabel's names, when the labels are its ids
    notes: list[str] = field(default_factory=list)
    caption: str | None = None  # a guess a result's title should carry (texts from one of several columns)

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        labelled = f", labels from {self.label_column!r}" if self.labels is not None else ""
        return f"<LabelledData {self.source}: {len(self)} texts from {self.text_column!r}{labelled}>"


# data sets known by name: name -> reader(split) -> (a DataFrame, a label for it); the text tasks register
# the demo's held-out BBC News articles (bbc, demo, demo-small)
NAMED: dict[str, Callable[[str | None], tuple[Any, str]]] = {}


def register_named(name: str, reader: Callable[[str | None], tuple[Any, str]]) -> None:
    """Make ``load_data(name)`` read ``reader(split)``: a (DataFrame, label) pair."""
    NAMED[name] = reader


def load_data(source: Any, split: str | None = None, text_column: str | None = None,
              label_column: str | None = None, limit: int | None = None,
              require_labels: bool = True) -> LabelledData:
    """Read texts (and labels) from ``source``; see the module docstring for what it may be."""
    if limit is not None and limit <= 0:
        raise UsageProblem(f"--limit must be a positive number of examples, got {limit}")
    if isinstance(source, LabelledData):
        return _limited(source, limit)
    frame, label, names = _table(source, split)
    return _extract(frame, label, split, text_column, label_column, limit, require_labels, names)


# -- finding the table -----------------------------------------------------------------------
def texts_of(source: Any) -> tuple[list[str], str]:
    """The texts of ``source`` (labels not needed) and where they are from: what a load test sends."""
    read = load_data(source, require_labels=False)
    return list(read.texts), read.source


def _table(source: Any, split: str | None):
    """(a pandas DataFrame or datasets.Dataset, a label for it, ClassLabel names or None)."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(source, pd.DataFrame):
        _no_split(split, "a DataFrame")
        return source, f"<DataFrame {len(source)} rows>", None
    datasets = sys.modules.get("datasets")
    if datasets is not None and isinstance(source, datasets.DatasetDict):
        return _from_dataset(*_pick_split(source, split, "this DatasetDict"), "<DatasetDict>")
    if datasets is not None and isinstance(source, datasets.Dataset):
        _no_split(split, "a Dataset (it is one split already)")
        return _from_dataset(source, None, f"<Dataset {len(source)} rows>")
    if isinstance(source, (list, tuple)) and all(isinstance(t, str) for t in source):
        import pandas as pd

        _no_split(split, "a list of texts")
        return pd.DataFrame({"text": list(source)}), f"<list of {len(source)} texts>", None
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"cannot read data from a {type(source).__name__}; pass a DataFrame, a datasets "
                        "Dataset, a CSV/JSON/JSONL/Parquet file, a hub dataset id, or demo")
    text = str(source)
    if text in NAMED:  # a data set a task plugin knows by name (the demo's held-out BBC News articles)
        return NAMED[text](split) + (None,)
    path = Path(text).expanduser()
    if path.is_file():
        _no_split(split, "a single file")
        return _read_file(path), str(source), None
    if path.is_dir():
        return _read_saved(path, split)
    if path.suffix.lower() in READERS or text.startswith((".", "/", "~")) or not _HUB_ID.match(text):
        raise DataError(f"no file at {text}; pass a CSV/JSON/JSONL/Parquet file, a DataFrame or "
                        "Dataset name, a hub dataset id, or demo")
    return _from_hub(text, split)


def _no_split(split: str | None, what: str) -> None:
    if split is not None:
        raise UsageProblem(f"--split {split} applies to hub datasets and DatasetDicts; {what} has no splits "
                           "(leave --split out)")


def _read_file(path: Path):
    import pandas as pd

    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"cannot tell how to read {path.name}; use a .csv, .tsv, .json, .jsonl or "
                        ".parquet file")
    try:
        if kind == "csv":
            return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        if kind == "parquet":
            return pd.read_parquet(path)
        if kind == "jsonl":
            return pd.read_json(path, lines=True)
        try:
            return pd.read_json(path)
        except ValueError:  # JSON Lines saved as .json is common
            return pd.read_json(path, lines=True)
    except (ValueError, OSError, ImportError, pd.errors.ParserError) as exc:
        raise DataError(f"could not read {path} as {kind}: {str(exc).splitlines()[0]}") from None


def _read_saved(path: Path, split: str | None):
    """A folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"{path} is a folder but not a saved dataset ({exc}); pass a data file inside "
                        "it") from None
    if isinstance(loaded, datasets.DatasetDict):
        return _from_dataset(*_pick_split(loaded, split, str(path)), str(path))
    _no_split(split, f"the dataset saved at {path}")
    return _from_dataset(loaded, None, str(path))


def _pick_split(dataset_dict, split: str | None, label: str):
    """(the chosen split's Dataset, its name): --split, else test, else the only one."""
    names = list(dataset_dict)
    if split is None:
        if "test" in names:
            split = "test"
        elif len(names) == 1:
            split = names[0]
        else:
            raise UsageProblem(f"{label} has the splits {', '.join(names)}; pick one with --split")
    if split not in names:
        raise DataError(f"{label} has no split {split!r}; its splits are: {', '.join(names)}")
    return dataset_dict[split], split


def _from_dataset(dataset, split: str | None, label: str):
    """Keep a Dataset as it is (columns are read one at a time); note ClassLabel names."""
    if split:
        label = f"{label} [{split}]"
    return dataset, label, _class_label_names(dataset)


def _class_label_names(dataset) -> dict[str, list[str]]:
    import datasets

    return {name: list(feat.names) for name, feat in dataset.features.items()
            if isinstance(feat, datasets.ClassLabel)}


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> tuple[bool, str]:
    """Whether the Hugging Face hub answers within ``timeout`` s, and why not (never hangs)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False, f"{var} is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return True, ""  # it answered
    except (OSError, ValueError) as exc:
        return False, f"no answer from {endpoint} within {timeout:.0f} s ({type(exc).__name__})"
    return True, ""


def _from_hub(dataset_id: str, split: str | None):
    import datasets

    reachable, why = hub_reachable()
    offline_env = any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
                      for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if not reachable and not offline_env:  # with the offline variables set, a cached copy may still load
        raise OfflineError(f"{dataset_id!r} is no variable or file here, and the hub cannot be reached to "
                           f"fetch it as a dataset ({why}); check the name, pass a local file or a "
                           "DataFrame, or connect and try again")
    try:
        loaded = datasets.load_dataset(dataset_id, split=split)
    except ConnectionError as exc:
        raise OfflineError(f"{dataset_id!r} is no variable or file here, and the hub cannot be reached to "
                           f"fetch it as a dataset ({why or exc}); check the name, pass a local file or "
                           "a DataFrame, or connect and try again") from None
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise DataError(f"no dataset {dataset_id} on the hub (or it is private): {exc}") from None
    except ValueError as exc:  # an unknown split
        raise DataError(f"could not load {dataset_id}: {str(exc).splitlines()[0]}") from None
    if isinstance(loaded, datasets.DatasetDict):
        return _from_dataset(*_pick_split(loaded, None, dataset_id), dataset_id)
    return _from_dataset(loaded, split, dataset_id)


# -- taking the columns ----------------------------------------------------------------------
def _columns(table) -> list[str]:
    return [str(c) for c in (table.column_names if hasattr(table, "column_names") else table.columns)]


def _column_values(table, name: str, limit: int | None) -> list:
    if hasattr(table, "column_names"):  # a datasets.Dataset: read just this column
        if limit is not None and limit < len(table):
            table = table.select(range(limit))
        return list(table[name])
    values = table[name] if limit is None else table[name].iloc[:limit]
    return values.tolist()


def guess_columns(columns: list[str], wanted: tuple[str, ...]) -> list[str]:
    """The columns whose name (any case) is one of ``wanted``: the guess is obvious when there is one."""
    return [c for c in columns if c.lower() in wanted]


def _extract(table, label: str, split, text_column, label_column, limit, require_labels,
             class_names) -> LabelledData:
    if not hasattr(table, "column_names") and not all(isinstance(c, str) for c in table.columns):
        table = table.rename(columns=str)  # read_csv(header=None), JSON arrays: 0, 1, ... are "0", "1", ...
    text_column, label_column = (None if c is None else str(c) for c in (text_column, label_column))
    columns = _columns(table)
    listing = ", ".join(columns) or "(none)"
    rows = len(table)
    if rows == 0:
        raise DataError(f"the dataset {label} is empty (0 rows); pass one with examples in it")
    notes: list[str] = []
    for given, what in ((text_column, "--text-column"), (label_column, "--label-column")):
        if given is not None and given not in columns:
            raise DataError(f"no column {given!r} in {label}; its columns are: {listing} (pass {what})")
    caption = None
    if text_column is None:
        named = guess_columns(columns, TEXT_COLUMNS)
        labels_like = set(guess_columns(columns, LABEL_COLUMNS)) | {label_column}
        strings = [c for c in _text_columns(table, columns) if c not in labels_like]
        found = named or strings
        if not found:
            raise DataError(f"{label} has no text column: none of its columns ({listing}) is named text, "
                            "sentence, review, ... or holds strings other than the labels; pass --text-column "
                            "with the column of texts")
        if len(found) != 1:
            raise DataError(f"cannot tell which column of {label} holds the texts{_among(named)}; pass "
                            f"--text-column with one of: {listing}")
        text_column = found[0]
        others = [c for c in strings if c != text_column]
        if others:  # a guess among several columns of text: the table's caption says so too
            also = f"{', '.join(map(repr, others))} also hold{'s' if len(others) == 1 else ''} text"
            caption = f"texts from {text_column!r}, guessed; {also}"
            notes.append(f"texts from column {text_column!r} (guessed; {also}: pass --text-column to use another)")
        else:
            notes.append(f"texts from column {text_column!r} (guessed)")
    if label_column is None:
        found = guess_columns([c for c in columns if c != text_column], LABEL_COLUMNS)
        label_column = found[0] if len(found) == 1 else None
        if label_column is None and require_labels:
            raise DataError(f"cannot tell which column of {label} holds the labels{_among(found)}; pass "
                            f"--label-column with one of: {listing}")
        if label_column is not None and require_labels:
            notes.append(f"labels from column {label_column!r} (guessed)")
        if not require_labels:
            label_column = None  # a guessed label column is not needed: leave it out of the fingerprint
    texts = _check_texts(_column_values(table, text_column, limit), text_column, label)
    labels = None
    if label_column is not None:
        labels = _check_labels(_column_values(table, label_column, limit), label_column, label)
    if limit is not None and limit < rows:
        notes.append(f"the first {limit} of {rows} examples (--limit)")
    used = [text_column] + ([label_column] if label_column else [])
    return LabelledData(texts=texts, labels=labels, source=label,
                        fingerprint=fingerprint(texts, labels, used, label, split),
                        text_column=text_column, label_column=label_column,
                        label_names=(class_names or {}).get(label_column), notes=notes, caption=caption)


def _text_columns(table, columns: list[str]) -> list[str]:
    return [c for c in columns if isinstance(_first(table, c), str)]


def _among(candidates: list[str]) -> str:
    return f" ({', '.join(map(repr, candidates))} all could)" if len(candidates) > 1 else ""


def _first(table, column: str):
    values = _column_values(table, column, 1)
    return values[0] if values else None


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _check_texts(values: list, column: str, label: str) -> list[str]:
    for i, value in enumerate(values):
        if not isinstance(value, str):
            if _missing(value):
                raise DataError(f"column {column!r} of {label} must hold text, but row {i} is empty; drop "
                                "the rows without text (e.g. frame.dropna()) or pass another --text-column")
            raise DataError(f"column {column!r} of {label} must hold text, but row {i} has "
                            f"{type(value).__name__} {repr(value)[:40]}; pass --text-column with a column "
                            "of strings (or convert it with .astype(str))")
    return values


def _check_labels(values: list, column: str, label: str) -> list:
    out = []
    for i, value in enumerate(values):
        if hasattr(value, "item") and not isinstance(value, str):
            value = value.item()  # numpy scalars
        if isinstance(value, float) and value == value and value.is_integer():
            value = int(value)  # ints read as floats by pandas
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            what = "no label" if _missing(value) else f"{type(value).__name__} {repr(value)[:40]}"
            raise DataError(f"column {column!r} of {label} must hold class labels (names or ids), but "
                            f"row {i} has {what}; fix that row or pass --label-column")
        out.append(value)
    return out


def fingerprint(texts: list[str], labels: list | None, columns: list[str], source: str,
                split: str | None = None) -> dict:
    """sha256 of exactly the texts and labels used, with the row count and the columns read."""
    digest = hashlib.sha256()
    for i, text in enumerate(texts):
        digest.update(json.dumps([text, None if labels is None else labels[i]]).encode())
        digest.update(b"\n")
    return {"sha256": digest.hexdigest(), "rows": len(texts), "columns": columns, "source": source,
            "split": split}


def _limited(data: LabelledData, limit: int | None) -> LabelledData:
    if limit is None or limit >= len(data):
        return data
    texts, labels = data.texts[:limit], None if data.labels is None else data.labels[:limit]
    return LabelledData(texts, labels, data.source,
                        fingerprint(texts, labels, data.fingerprint.get("columns", []), data.source,
                                    data.fingerprint.get("split")),
                        data.text_column, data.label_column, data.label_names,
                        data.notes + [f"the first {limit} of {len(data)} examples (--limit)"], data.caption)


def pick_column(columns: list[str], asked: str | None, wanted: tuple[str, ...], what: str, flag: str) -> str:
    """The column asked for, else the one of ``wanted`` present, else one line asking for it."""
    if asked is not None:
        if asked not in columns:
            raise DataError(f"no column {asked!r}; the columns are {', '.join(map(str, columns))}")
        return asked
    found = [c for c in columns if str(c).lower() in wanted]
    if len(found) == 1:
        return found[0]
    raise DataError(f"which column holds the {what}s? give {flag} (the columns are {', '.join(map(str, columns))})")
