"""The intensity cache between stage 1 and stage 2, and the prediction-writer callback that fills it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

from dfer_pd.common.files import NpzStore, atomic_write_json
from dfer_pd.stage1.contract import ContractError, ScoringContract

CONTRACT_FILE = "contract.json"


class IntensityCache(NpzStore):
    """Per-video stage-1 outputs: ``<root>/<contract key>/<video sha256>.npz``.

    The folder is named by the scoring contract and holds it as ``contract.json``; every file also
    carries the contract's key, so a file copied into the wrong folder is refused, not used.
    """

    def __init__(self, root: str | Path, contract: ScoringContract) -> None:
        super().__init__(root, contract.key())
        self.contract = contract
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / CONTRACT_FILE).exists():
            atomic_write_json(self.folder / CONTRACT_FILE, contract.to_dict())

    def write(self, video_digest: str, cosine: np.ndarray, video_features: np.ndarray) -> None:
        super().write(video_digest, cosine=np.asarray(cosine, dtype=np.float64),
                      video_features=np.asarray(video_features, dtype=np.float32),
                      contract_key=np.asarray(self.key))

    def read(self, video_digest: str) -> dict[str, np.ndarray]:
        entry = super().read(video_digest)
        if str(entry.get("contract_key")) != self.key:
            raise ContractError(f"{self.path(video_digest)} was scored under another contract ({entry.get('contract_key')}), "
                                f"not {self.key}: delete it and extract again")
        return entry


class IntensityCacheWriter(BasePredictionWriter):
    """Writes each predicted video into the cache by the digest carried in the batch (not batch_indices)."""

    def __init__(self, cache: IntensityCache) -> None:
        super().__init__(write_interval="batch")
        self.cache = cache
        self.written = 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0) -> None:
        for i, digest in enumerate(prediction["key"]):
            self.cache.write(digest, prediction["cosine"][i], prediction["video_features"][i])
            self.written += 1
