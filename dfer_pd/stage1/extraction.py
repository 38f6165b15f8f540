"""Stage 1 -> stage 2: score every cohort video once under a scoring contract, through the cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np

from dfer_pd.common.files import file_digest
from dfer_pd.stage1.cache import IntensityCache, IntensityCacheWriter
from dfer_pd.stage1.contract import ScoringContract
from dfer_pd.stage1.datasets.base import ClipRecord, check_readable
from dfer_pd.stage1.scoring import Stage1Scorer, expression_cosines
from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule
from dfer_pd.stage2.features import CohortIntensities

log = logging.getLogger(__name__)


@dataclass
class ExtractionReport:
    videos: int = 0
    cached: int = 0
    scored: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)
    cache_folder: Path | None = None

    def summary(self) -> str:
        return (
            f"{self.videos} videos: {self.cached} from cache, {self.scored} scored"
            + (f", {len(self.unreadable)} unreadable" if self.unreadable else "")
            + (f" (cache {self.cache_folder})" if self.cache_folder else "")
        )


def extract_intensities(
    datamodule: PDCohortDataModule,
    checkpoint: str | Path,
    contract: ScoringContract,
    cache_dir: str | Path,
    accelerator: str = "auto",
    devices: int | str = 1,
) -> tuple[CohortIntensities, ExtractionReport]:
    """Fill the cache for every video of the cohort, then assemble per-subject (N, 4, 4) cosines.

    Videos already in the cache (same contract and video bytes) are not scored again; an interrupted
    run resumes because every video is written atomically as soon as it is scored.
    """
    contract.check_checkpoint(checkpoint)
    columns = contract.expression_columns()  # refuse a checkpoint without the four expressions up front
    cohort = datamodule.cohort
    cache = IntensityCache(cache_dir, contract)
    report = ExtractionReport(cache_folder=cache.folder)

    digests: dict[tuple[str, str], str] = {}
    paths: dict[str, Path] = {}
    for subject in cohort.subjects:
        for expression in cohort.expressions:
            path = subject.videos[expression]
            digest = file_digest(path)
            digests[subject.subject_id, expression] = digest
            paths.setdefault(digest, path)
    report.videos = len(digests)
    missing = [ClipRecord(key=d, path=p) for d, p in paths.items() if not cache.has(d)]
    report.cached = len(paths) - len(missing)
    if missing:
        readable, failed = check_readable(missing)
        if failed:
            report.unreadable = {str(paths[d]): problem for d, problem in failed.items()}
            details = "; ".join(f"{p}: {why}" for p, why in report.unreadable.items())
            raise ValueError(f"{len(failed)} cohort video(s) cannot be read: {details}")
        datamodule.set_videos_to_score([(r.key, r.path) for r in readable], contract)
        writer = IntensityCacheWriter(cache)
        # Precision is the contract's, applied inside the scoring function, so the Trainer stays at 32-true.
        trainer = L.Trainer(accelerator=accelerator, devices=devices, logger=False, callbacks=[writer],
                            enable_progress_bar=False, enable_model_summary=False)
        trainer.predict(Stage1Scorer.from_checkpoint(checkpoint, contract), datamodule=datamodule,
                        return_predictions=False)
        trainer.strategy.barrier()  # under DDP every rank wrote its share; read only once all have
        report.scored = writer.written
    log.info("intensity extraction: %s", report.summary())

    cosine = np.zeros((len(cohort.subjects), len(cohort.expressions), len(columns)), dtype=np.float64)
    features = None
    for n, subject in enumerate(cohort.subjects):
        for j, expression in enumerate(cohort.expressions):
            entry = cache.read(digests[subject.subject_id, expression])
            cosine[n, j] = expression_cosines(entry["cosine"], contract)
            if features is None:
                features = np.zeros((len(cohort.subjects), len(cohort.expressions), entry["video_features"].shape[-1]), np.float32)
            features[n, j] = entry["video_features"]
    data = CohortIntensities(
        subject_ids=[s.subject_id for s in cohort.subjects],
        labels=np.array([s.label for s in cohort.subjects], dtype=np.int64),
        cosine=cosine,
        contract=contract,
        video_features=features,
    )
    return data, report
