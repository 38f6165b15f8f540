"""Stage 1 -> stage 2: score every cohort video once with a stage-1 checkpoint, through the cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch

from dfer_pd.common.files import file_digest
from dfer_pd.stage1.cache import IntensityCache, IntensityCacheWriter
from dfer_pd.stage1.datasets.base import ClipRecord, check_readable
from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule
from dfer_pd.stage2.features import CohortIntensities
from dfer_pd.stage1.clip_assets import load_image_normalisation
from dfer_pd.stage1.module import DferClipModule

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A stage-1 checkpoint that cannot be used (corrupt, or not a DferClipModule checkpoint)."""


@dataclass
class ExtractionReport:
    videos: int = 0
    cached: int = 0
    scored: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)
    cache_folder: Path | None = None
    checkpoint_sha256: str = ""
    settings: dict = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.videos} videos: {self.cached} from cache, {self.scored} scored"
            + (f", {len(self.unreadable)} unreadable" if self.unreadable else "")
            + (f" (cache {self.cache_folder})" if self.cache_folder else "")
        )


def load_stage1(checkpoint: str | Path, map_location: str = "cpu") -> DferClipModule:
    """A trained DferClipModule; loaded with weights_only=True, so a checkpoint cannot run code."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"stage-1 checkpoint {checkpoint} does not exist")
    try:
        return DferClipModule.load_from_checkpoint(checkpoint, map_location=map_location, weights_only=True)
    except Exception as err:  # any failure to unpickle or rebuild means "not a usable checkpoint"
        raise CheckpointError(f"{checkpoint} is not a usable stage-1 (DferClipModule) checkpoint: {err}") from err


def stage1_hparams(checkpoint: str | Path) -> dict:
    """A stage-1 checkpoint's hyperparameters, without building the network (enough when all is cached)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"stage-1 checkpoint {checkpoint} does not exist")
    try:
        hparams = torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]
        for key in ("clip_name_or_path", "num_frames", "tau"):
            hparams[key]
    except Exception as err:  # any failure to unpickle or a missing key means "not a usable checkpoint"
        raise CheckpointError(f"{checkpoint} is not a usable stage-1 (DferClipModule) checkpoint: {err}") from err
    return dict(hparams)


def sampling_settings(hparams: Mapping, crop_faces: bool = False, face_detector: str = "haar") -> dict:
    """Everything besides the weights that changes a video's scores."""
    mean, std, size = load_image_normalisation(hparams["clip_name_or_path"])
    return {
        "crop_faces": bool(crop_faces),
        "face_detector": face_detector if crop_faces else None,
        "num_frames": int(hparams["num_frames"]),
        "sampler": "segment-centre",
        "image_size": int(size),
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "tau": float(hparams["tau"]),
    }


def extract_intensities(
    datamodule: PDCohortDataModule,
    checkpoint: str | Path,
    cache_dir: str | Path,
    accelerator: str = "auto",
    devices: int | str = 1,
    precision: str | None = None,
) -> tuple[CohortIntensities, ExtractionReport]:
    """Fill the cache for every video of the cohort, then assemble per-subject (N, 4, 4) cosines.

    Videos already in the cache (same checkpoint bytes, settings and video bytes) are not scored again;
    an interrupted run resumes because every video is written atomically as soon as it is scored.
    """
    cohort = datamodule.cohort
    checkpoint_digest = file_digest(checkpoint)
    settings = sampling_settings(stage1_hparams(checkpoint), datamodule.hparams.crop_faces, datamodule.hparams.face_detector)
    cache = IntensityCache(cache_dir, checkpoint_digest, settings)
    report = ExtractionReport(cache_folder=cache.folder, checkpoint_sha256=checkpoint_digest, settings=settings)

    digests: dict[tuple[str, str], str] = {}
    records: dict[str, ClipRecord] = {}
    for subject in cohort.subjects:
        for expression in cohort.expressions:
            path = subject.videos[expression]
            digest = file_digest(path)
            digests[subject.subject_id, expression] = digest
            records.setdefault(digest, ClipRecord(key=digest, path=path))
    report.videos = len(digests)
    missing = [r for d, r in records.items() if not cache.has(d)]
    report.cached = len(records) - len(missing)
    if missing:
        readable, failed = check_readable(missing)
        if failed:
            report.unreadable = {str(records[d].path): problem for d, problem in failed.items()}
            details = "; ".join(f"{p}: {why}" for p, why in report.unreadable.items())
            raise ValueError(f"{len(failed)} cohort video(s) cannot be read: {details}")
        module = load_stage1(checkpoint)
        datamodule.set_videos_to_score(readable, settings)
        writer = IntensityCacheWriter(cache)
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=devices,
            precision=precision,
            logger=False,
            callbacks=[writer],
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
        trainer.strategy.barrier()  # under DDP every rank wrote its share; read only once all have
        report.scored = writer.written
    log.info("intensity extraction: %s", report.summary())

    cosine = np.zeros((len(cohort.subjects), len(cohort.expressions), 4), dtype=np.float64)
    features = None
    tau = settings["tau"]
    for n, subject in enumerate(cohort.subjects):
        for j, expression in enumerate(cohort.expressions):
            entry = cache.read(digests[subject.subject_id, expression])
            cosine[n, j] = entry["cosine"]
            if features is None:
                features = np.zeros((len(cohort.subjects), len(cohort.expressions), entry["video_features"].shape[-1]), np.float32)
            features[n, j] = entry["video_features"]
    data = CohortIntensities(
        subject_ids=[s.subject_id for s in cohort.subjects],
        labels=np.array([s.label for s in cohort.subjects], dtype=np.int64),
        cosine=cosine,
        tau=tau,
        video_features=features,
    )
    return data, report
