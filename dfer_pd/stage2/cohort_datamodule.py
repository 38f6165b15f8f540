"""The PD cohort as a LightningDataModule: its videos, prepared for stage 1 under a scoring contract."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.common.parallel import process_context
from dfer_pd.faces.cache import FaceCropCache
from dfer_pd.stage1.contract import ScoringContract
from dfer_pd.stage1.scoring import ScoringDataset
from dfer_pd.stage2.cohort import CohortManifest, read_manifest


class PDCohortDataModule(L.LightningDataModule):
    """Reads and validates a cohort manifest; `predict_dataloader` yields the videos still to be scored.

    How a video is read (frames, face path, image size, normalisation) is the scoring contract's,
    given with the videos to score; each item's key is the video's content digest, so the cache
    writer files it by content. ``face_crop_cache`` keeps face crops between runs.
    """

    def __init__(
        self,
        manifest: str,
        expressions: tuple[str, ...] = EXPRESSIONS,
        skip_incomplete: bool = False,
        batch_size: int = 8,
        num_workers: int = 0,
        face_crop_cache: str | None = None,
        lenient_manifest: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # lenient_manifest: the manifest's problems wait in cohort.problems, for extraction to list with the videos'.
        self.cohort: CohortManifest = read_manifest(Path(manifest), tuple(expressions), skip_incomplete=skip_incomplete,
                                                    lenient=lenient_manifest)
        self.to_score: list[tuple[str, Path]] = []
        self.contract: ScoringContract | None = None

    def set_videos_to_score(self, items: list[tuple[str, Path]], contract: ScoringContract) -> None:
        """The ``(key, path)`` videos the next `predict_dataloader` yields, prepared as ``contract`` says."""
        self.to_score = list(items)
        self.contract = contract

    def predict_dataloader(self) -> DataLoader:
        if self.contract is None:
            raise RuntimeError("set_videos_to_score(items, contract) comes before predict_dataloader()")
        hp = self.hparams
        cache = FaceCropCache(hp.face_crop_cache) if hp.face_crop_cache else None
        return DataLoader(
            ScoringDataset(self.to_score, self.contract, cache),
            batch_size=hp.batch_size,
            shuffle=False,
            num_workers=hp.num_workers,
            pin_memory=torch.cuda.is_available(),
            # forkserver, not fork: a child forked while a thread of this process holds a lock hangs.
            multiprocessing_context=process_context() if hp.num_workers > 0 else None,
        )
