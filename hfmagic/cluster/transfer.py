"""A variant's files on a node of the Ray cluster, with no shared disk assumed.

A variant's folder and its model's folder travel through Ray's object store, keyed by the sha256
of their files. A node keeps what it received under ``$HFMAGIC_NODE_CACHE`` (default ``<its temp
folder>/hfmagic-node-cache``) and says which hashes it lacks before anything is put, so a folder a
node already holds is never sent again. The kernel side digests and reads folders; the node side
(:func:`have`, :func:`materialize`, :func:`localize`) runs in a worker on the node.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from hfmagic.core.hashing import file_sha256

NODE_CACHE_ENV = "HFMAGIC_NODE_CACHE"

_digests: dict[tuple, str] = {}


def folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".hfmagic-"))


def folder_digest(folder: Path) -> str:
    """sha256 over every file's relative path and content (cached while no file changes)."""

    files = folder_files(folder)
    stamp = (str(folder), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp not in _digests:
        digest = hashlib.sha256()
        for p in files:
            digest.update(f"{p.relative_to(folder)}\0{file_sha256(p)}\0".encode())
        _digests[stamp] = digest.hexdigest()
    return _digests[stamp]


def read_folder(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder_files(folder)}


def node_cache() -> Path:
    return Path(os.environ.get(NODE_CACHE_ENV) or Path(tempfile.gettempdir()) / "hfmagic-node-cache")


def have(digest: str) -> bool:
    return (node_cache() / digest[:32] / ".hfmagic-complete").exists()


def materialize(digest: str, holder: list | None) -> tuple[Path, int]:
    """The folder ``digest`` on this node: kept from before, or written from the object ``holder``
    holds (fetched from the kernel's object store now). Returns its path and the bytes received."""
    dest = node_cache() / digest[:32]
    if have(digest):
        return dest, 0
    if not holder:
        raise RuntimeError(f"folder {digest[:12]} is not on this node and was not sent")
    import ray

    files = ray.get(holder[0])
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
    for rel, data in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    (tmp / ".hfmagic-complete").touch()
    try:
        tmp.rename(dest)
    except OSError:  # another worker on this node wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest, sum(len(d) for d in files.values())


def variant_folders(spec: dict) -> dict[str, Path]:
    """The folders a job's variant needs on a node: its model's folder and its own (role -> folder)."""
    folders = {"model": Path(spec["model_path"])}
    if spec.get("path"):
        own = Path(spec["path"]) if spec.get("path_is_dir") else Path(spec["path"]).parent
        if own != folders["model"]:
            folders["variant"] = own
    return folders


def localize(spec: dict, places: dict[str, Path]) -> dict:
    """The variant spec with its paths on this node (``places``: role -> folder here)."""
    out = dict(spec)
    out["model_path"] = str(places["model"])
    if spec.get("path"):
        own = places.get("variant", places["model"])
        out["path"] = str(own if spec.get("path_is_dir") else own / Path(spec["path"]).name)
    return out
