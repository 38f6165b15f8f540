"""Callbacks: the intensity cache written between stage 1 and stage 2."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

from dfer_pd.common.files import atomic_save_npz, atomic_write_json, content_key

CACHE_FORMAT_VERSION = 1


def scoring_key(checkpoint_digest: str, settings: Mapping) -> str:
    """One folder per (checkpoint content, sampling settings): a change of either means re-scoring."""
    return content_key({"checkpoint": checkpoint_digest, "settings": dict(settings), "version": CACHE_FORMAT_VERSION})


class IntensityCache:
    """Per-video stage-1 outputs on disk: `<root>/<scoring key>/<video digest>.npz` (cosine, tau, features)."""

    def __init__(self, root: str | Path, checkpoint_digest: str, settings: Mapping) -> None:
        self.root = Path(root)
        self.settings = dict(settings)
        self.folder = self.root / scoring_key(checkpoint_digest, settings)
        self.folder.mkdir(parents=True, exist_ok=True)
        info = self.folder / "scoring.json"
        if not info.exists():
            atomic_write_json(info, {"checkpoint_sha256": checkpoint_digest, "settings": self.settings})

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
