"""Files: content digests, content keys and atomic writes, so no reader ever sees half a file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import numpy as np


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, or of every file under a folder (frame folders)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def content_key(payload: Mapping, length: int = 20) -> str:
    """A short, stable key for a JSON-able description (sorted keys): equal descriptions, equal keys."""
    text = json.dumps(dict(payload), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Write into a temporary file beside ``path`` and rename it over ``path`` only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` through :func:`atomic_write` (a file handle also stops numpy appending ``.npz``)."""
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def atomic_write_json(path: str | Path, value: object) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(value, handle, indent=2, default=str)


class NpzStore:
    """Per-video arrays on disk: ``<root>/<key>/<video sha256>.npz``, each file written atomically.

    ``key`` names what made the arrays (a scoring contract, face-crop or landmark settings), so other
    settings read and write another folder and a changed video (another digest) is computed again.
    The one content-keyed cache behind the face crops, the landmark tracks and the intensities.
    """

    def __init__(self, root: str | Path, key: str) -> None:
        self.root = Path(root)
        self.key = key
        self.folder = self.root / key

    def path(self, digest: str) -> Path:
        return self.folder / f"{digest}.npz"

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def read(self, digest: str) -> dict[str, np.ndarray]:
        with np.load(self.path(digest), allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}

    def write(self, digest: str, **arrays: np.ndarray) -> None:
        atomic_save_npz(self.path(digest), **arrays)
