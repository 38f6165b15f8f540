"""Callbacks: the intensity cache written between stage 1 and stage 2."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

CACHE_FORMAT_VERSION = 1


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


def scoring_key(checkpoint_digest: str, settings: Mapping) -> str:
    """One folder per (checkpoint content, sampling settings): a change of either means re-scoring."""
    payload = json.dumps({"checkpoint": checkpoint_digest, "settings": dict(settings), "version": CACHE_FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class IntensityCache:
    """Per-video stage-1 outputs on disk: `<root>/<scoring key>/<video digest>.npz` (cosine, tau, features)."""

    def __init__(self, root: str | Path, checkpoint_digest: str, settings: Mapping) -> None:
        self.root = Path(root)
        self.settings = dict(settings)
        self.folder = self.root / scoring_key(checkpoint_digest, settings)
        self.folder.mkdir(parents=True, exist_ok=True)
        info = self.folder / "scoring.json"
        if not info.exists():
            tmp = info.with_suffix(".tmp")
            tmp.write_text(json.dumps({"checkpoint_sha256": checkpoint_digest, "settings": self.settings}, indent=2))
            os.replace(tmp, info)

    def path(self, video_digest: str) -> Path:
        return self.folder / f"{video_digest}.npz"

    def has(self, video_digest: str) -> bool:
        return self.path(video_digest).exists()

    def write(self, video_digest: str, cosine: np.ndarray, tau: float, video_features: np.ndarray) -> None:
        atomic_save_npz(
            self.path(video_digest),
            cosine=np.asarray(cosine, dtype=np.float64),
            tau=np.asarray(tau, dtype=np.float64),
            video_features=np.asarray(video_features, dtype=np.float32),
        )

    def read(self, video_digest: str) -> dict[str, np.ndarray]:
        with np.load(self.path(video_digest), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


class IntensityCacheWriter(BasePredictionWriter):
    """Writes each predicted video into the cache by the digest carried in the batch (not batch_indices)."""

    def __init__(self, cache: IntensityCache) -> None:
        super().__init__(write_interval="batch")
        self.cache = cache
        self.written = 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0) -> None:
        cosine = prediction["cosine"].numpy()
        features = prediction["video_features"].numpy()
        for i, digest in enumerate(prediction["key"]):
            self.cache.write(digest, cosine[i], prediction["tau"], features[i])
            self.written += 1
