"""The PD cohort as a LightningDataModule: videos for stage 1 to score, per-subject sequences for stage 2."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.stage2.cohort import CohortManifest, read_manifest
from dfer_pd.stage1.datasets.base import ClipRecord, VideoClipDataset
from dfer_pd.screening.faces import FaceCropCache, read_face_clip
from dfer_pd.stage1.transforms import build_clip_transform
from dfer_pd.common.video import read_clip


class PDCohortDataModule(L.LightningDataModule):
    """Reads and validates a cohort manifest; `predict_dataloader` yields the videos still to be scored.

    Each item's key is the video's content digest, so the cache writer files it by content.
    `crop_faces=True` is for raw recordings: the face is detected, tracked and cropped before scoring;
    leave it off for cohorts whose videos are already face crops.
    """

    def __init__(
        self,
        manifest: str,
        expressions: tuple[str, ...] = EXPRESSIONS,
        skip_incomplete: bool = False,
        num_frames: int = 16,
        batch_size: int = 8,
        num_workers: int = 0,
        image_size: int = 224,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        crop_faces: bool = False,
        face_detector: str = "haar",
        face_crop_cache: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cohort: CohortManifest = read_manifest(Path(manifest), tuple(expressions), skip_incomplete=skip_incomplete)
        self.to_score: list[ClipRecord] = []

    def set_videos_to_score(self, records: list[ClipRecord], settings: dict | None = None) -> None:
        """The videos the next `predict_dataloader` yields, sampled as the scoring checkpoint expects."""
        self.to_score = list(records)
        if settings is not None:
            self.hparams.update(num_frames=settings["num_frames"], image_size=settings["image_size"],
                                mean=tuple(settings["mean"]), std=tuple(settings["std"]))

    def predict_dataloader(self) -> DataLoader:
        hp = self.hparams
        kwargs = {k: v for k, v in (("mean", hp.mean), ("std", hp.std)) if v is not None}
        transform = build_clip_transform(False, hp.image_size, **kwargs)
        reader = read_clip
        if hp.crop_faces:  # raw (phone) videos: find, track and crop the face first, as DFEW's clips are
            cache = FaceCropCache(hp.face_crop_cache) if hp.face_crop_cache else None
            reader = partial(read_face_clip, detector=hp.face_detector, size=hp.image_size, cache=cache)
        dataset = VideoClipDataset(self.to_score, hp.num_frames, train=False, transform=transform, reader=reader)
        return DataLoader(
            dataset,
            batch_size=hp.batch_size,
            shuffle=False,
            num_workers=hp.num_workers,
            pin_memory=torch.cuda.is_available(),
        )
