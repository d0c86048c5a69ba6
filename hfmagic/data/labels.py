"""Labels: what a user's data calls its classes, mapped to a model's class ids (``--label-map``: a
dict, a dict literal, a JSON file, or ``ids``), with one clear line where the two sides disagree."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfmagic.core.errors import DataError, UsageProblem

if TYPE_CHECKING:
    from hfmagic.data.tables import LabelledData


LABEL_MAP_FORMS = ("a dict (a variable, or a literal such as '{\"0\": \"business\", \"1\": \"sport\"}'), "
                   "the path of a JSON file holding one, or ids (the data's labels are the model's class ids)")


def read_label_map(spec: Any) -> dict[str, int | str] | str | None:
    """``--label-map``: ``"ids"``, or {data label: the model's label name or class id} from a dict, a
    Python/JSON dict literal, or a JSON file. Keys come back as strings (as JSON keeps them), so a
    map recorded with a run reads the same again."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        mapping: Any = dict(spec)
    elif isinstance(spec, (str, os.PathLike)):
        text = str(spec).strip()
        if text == "ids":
            return "ids"
        if text.startswith("{"):
            mapping = _dict_literal(text)
        else:
            path = Path(text).expanduser()
            if not path.is_file():
                raise UsageProblem(f"--label-map {text!r} is no file here; give {LABEL_MAP_FORMS}")
            try:
                mapping = json.loads(path.read_text())
            except (ValueError, OSError, UnicodeDecodeError) as exc:
                raise DataError(f"--label-map {path} is not a JSON file ({exc}); it must hold one object, "
                                'e.g. {"0": "business", "1": "sport"}') from None
    else:
        raise UsageProblem(f"--label-map cannot be a {type(spec).__name__}; give {LABEL_MAP_FORMS}")
    if not isinstance(mapping, dict) or not mapping:
        raise UsageProblem(f"--label-map must map the data's labels to the model's, and {str(spec)[:60]!r} "
                           f"holds no such pairs; give {LABEL_MAP_FORMS}")
    for key, value in mapping.items():
        for item in (key, value):
            if isinstance(item, bool) or not isinstance(item, (int, str)):
                raise UsageProblem(f"--label-map pairs are labels (names or ids), but {key!r}: {value!r} is not; "
                                   f"give {LABEL_MAP_FORMS}")
    return {str(k): v for k, v in mapping.items()}


def _dict_literal(text: str) -> Any:
    """A JSON or Python dict literal."""
    import ast

    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise UsageProblem(f"could not read --label-map {text!r} as a dict; give {LABEL_MAP_FORMS}") from None


def label_ids(data: LabelledData, id2label: dict[int, str], label_map: dict | str | None = None) -> list[int]:
    """The dataset's labels as the model's class ids; a clear error listing both sides otherwise.

    ``label_map`` (what :func:`hfmagic.data.tables.read_label_map` returns): ``"ids"`` takes every label
    as a class id (strings of digits included); a dict maps data labels to the model's names or
    ids, and labels it leaves out are matched as usual."""
    if not id2label:
        raise DataError("the model has no id2label in its config, so its predictions cannot be matched "
                        "to labels; save it with id2label set")
    values = data.labels
    model_side = ", ".join(f"{i}:{n}" for i, n in sorted(id2label.items()))
    if label_map == "ids":
        return _labels_as_ids(values, id2label, model_side)
    mapped = _mapped_ids(label_map or {}, id2label, model_side)
    generic = all(re.fullmatch(r"LABEL_\d+", n) for n in id2label.values())
    names = data.label_names if all(isinstance(v, int) for v in values) and not generic else None
    out, unknown = [], []
    for v in values:
        name = names[v] if names else v  # a ClassLabel: match the names it stands for
        key = next((k for k in (str(v), str(name)) if k in mapped), None)
        found = mapped[key] if key is not None else _model_id(name, id2label)
        if found is None:
            unknown.append(name)
        out.append(found)
    if unknown:
        shown = sorted(set([names[v] for v in values] if names else values), key=str)
        data_side = ", ".join(map(str, shown))
        missing = ", ".join(map(repr, sorted(set(unknown), key=str)))
        if label_map:
            raise DataError(f"labels neither --label-map nor the model's id2label know: {missing}; add them "
                            f"to the map (the data's labels: {data_side}; the model's id2label: {model_side})")
        if all(isinstance(v, str) and v.strip().isdigit() for v in unknown):
            example = json.dumps({u: id2label.get(int(u), id2label[min(id2label)])
                                  for u in sorted(set(unknown), key=str)[:2]})
            raise DataError(f"the data's labels are strings of digits ({', '.join(map(repr, shown))}), which "
                            "look like class ids, "
                            f"while the model's id2label names its classes ({model_side}); if they are its ids, "
                            f"pass --label-map ids, or else map each to a name: --label-map '{example}' (or a "
                            "dict variable, or a JSON file)")
        raise DataError(f"labels the model does not know: {missing}. The data's labels: {data_side}; the "
                        f"model's id2label: {model_side}. Rename them in the data, map them with --label-map "
                        "(or pick another --label-column)")
    return out


def _model_id(label, id2label: dict[int, str], digits: bool = False) -> int | None:
    """The model's class id for a label: an id it has, or one of its names (case aside); with
    ``digits``, a string of digits is an id too."""
    if isinstance(label, int):
        return label if label in id2label else None
    by_name = {n: i for i, n in id2label.items()}
    found = by_name.get(label, {n.lower(): i for i, n in id2label.items()}.get(label.lower()))
    if found is None and digits and label.strip().isdigit() and int(label) in id2label:
        found = int(label)
    return found


def _mapped_ids(label_map: dict, id2label: dict[int, str], model_side: str) -> dict[str, int]:
    """--label-map's targets as class ids, each checked against the model's labels."""
    out = {}
    for key, target in label_map.items():
        out[key] = _model_id(target, id2label, digits=True)
        if out[key] is None:
            raise DataError(f"--label-map maps {key!r} to {target!r}, which is not one of the model's labels; "
                            f"its id2label: {model_side}")
    return out


def _labels_as_ids(values: list, id2label: dict[int, str], model_side: str) -> list[int]:
    """--label-map ids: every label (an int, or a string of digits) is the model's class id."""
    words = sorted({v for v in values if not isinstance(v, int) and not v.strip().isdigit()}, key=str)
    if words:
        raise DataError(f"--label-map ids takes the data's labels as class ids, but {', '.join(map(repr, words[:5]))} "
                        "are not whole numbers; map them to the model's labels with a dict instead")
    ids = [int(v) for v in values]
    outside = sorted(set(ids) - set(id2label))
    if outside:
        raise DataError(f"--label-map ids: the data's labels {', '.join(map(str, outside))} are not class ids of "
                        f"the model; its id2label: {model_side}")
    return ids
