"""A variant as a plain dict another process loads it from (a worker, a Ray actor or task, a
served replica): what it names, and how to load it back."""

from __future__ import annotations

from pathlib import Path

from hfmagic.models.handle import ModelHandle
from hfmagic.models.variants import Variant
from hfmagic.tasks import origin


def variant_spec(variant) -> dict:
    """What a process elsewhere needs to load ``variant`` (:func:`variant_from_spec`): its files, its
    model's folder and task (with where the task was registered, for a task added at run time)."""
    path = variant.path
    return {"name": variant.name, "path": str(path) if path else None, "level": variant.level,
            "runtime": variant.runtime, "model_path": str(variant.model.path), "task": variant.model.task,
            "task_origin": origin(variant.model.task), "model_name": variant.model.name,
            "trust_remote_code": variant.model.trust_remote_code,
            "path_is_dir": path is not None and Path(path).is_dir()}


def variant_from_spec(spec: dict):
    """The variant a job's spec names (its model handle included), as this process sees the paths."""

    model = ModelHandle(path=Path(spec["model_path"]), task=spec["task"], source=spec["model_path"],
                        trust_remote_code=spec.get("trust_remote_code", False), name=spec["model_name"])
    return Variant(spec["name"], model, path=Path(spec["path"]) if spec.get("path") else None,
                   level=spec.get("level"), runtime=spec.get("runtime"))
