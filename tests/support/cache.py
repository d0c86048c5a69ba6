"""The export cache as a test sees it."""

from __future__ import annotations

import json
from pathlib import Path

from hfmagic.export.cache import META


def entries(root: Path) -> dict[str, list[str]]:
    """What a cache folder holds: complete entries by variant name, and anything else."""
    found: dict[str, list[str]] = {"complete": [], "other": []}
    for child in sorted(root.iterdir()) if root.exists() else []:
        meta = child / META
        if meta.is_file() and (child / json.loads(meta.read_text())["file"]).is_file():
            found["complete"].append(json.loads(meta.read_text())["name"])
        else:
            found["other"].append(child.name)
    return found
