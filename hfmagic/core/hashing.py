"""Content hashes: a file's, a model's weights (one file, or shards), a folder's. Models, variants,
the export cache, the run store and a cluster's file transfers all name content by these."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(files) -> str:
    """The weights' hash: the file's own for one file; for shards, one hash of each shard's name and hash."""
    return file_sha256(files[0]) if len(files) == 1 else names_and_contents_sha256(files)


def names_and_contents_sha256(files) -> str:
    """One hash of each file's name and content, in the order given."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{file_sha256(path)}\0".encode())
    return digest.hexdigest()


def folder_sha256(folder: Path) -> str:
    """One hash of every file's name and content: weights, config and tokenizer alike."""
    return names_and_contents_sha256(sorted(p for p in folder.iterdir() if p.is_file()))
