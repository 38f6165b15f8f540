"""Stage 1 -> stage 2: score every cohort video once under a scoring contract, through the cache.

Before any scoring every video still to be scored is checked exactly as it will be read
(:func:`dfer_pd.stage1.quality.check_video`: unreadable, truncated beyond the accepted share, a
still image, no face; and, with kinematics on, no face in the landmark pass). All problems are
listed at once, each with its file, manifest line and reason; then extraction stops with that list
(:class:`UnusableVideosError`) or, with ``skip_unusable``, leaves those subjects out and records
them (:attr:`ExtractionReport.excluded`). Landmark kinematics (:mod:`dfer_pd.stage2.kinematics`)
are read once per video into their own content-keyed cache beside the intensity cache.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset

from dfer_pd.common.files import file_digest
from dfer_pd.common.parallel import process_context
from dfer_pd.common.progress import progress_enabled, track
from dfer_pd.common.video import VideoReadError
from dfer_pd.stage1.quality_policy import QualityPolicy
from dfer_pd.stage1.cache import IntensityCache, IntensityCacheWriter
from dfer_pd.stage1.contract import ONNX_RUNTIMES, ScoringContract
from dfer_pd.stage1.scoring import Stage1Scorer, expression_cosines
from dfer_pd.stage2.cohort import ManifestError
from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule
from dfer_pd.stage2.features import CohortIntensities
from dfer_pd.stage2.kinematics import LandmarkCache, landmark_cache_root, subject_kinematics
from dfer_pd.stage2.settings import KinematicsSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnusableVideo:
    """A cohort video that cannot be used, where the manifest lists it, and why."""

    subject_id: str
    expression: str
    path: Path
    line: int | None
    reason: str

    def describe(self) -> str:
        where = f"manifest line {self.line}, " if self.line is not None else ""
        return f"{self.path} ({where}subject {self.subject_id}, {self.expression}): {self.reason}"

    def to_dict(self) -> dict:
        return {"subject_id": self.subject_id, "expression": self.expression, "path": str(self.path),
                "line": self.line, "reason": self.reason}


class UnusableVideosError(ValueError):
    """Cohort videos that cannot be used; the message lists every one (file, manifest line, reason)."""

    def __init__(self, manifest: Path, unusable: list[UnusableVideo]) -> None:
        self.unusable = unusable
        subjects = len({u.subject_id for u in unusable})
        listed = "\n".join(f"  {u.describe()}" for u in unusable)
        super().__init__(
            f"{manifest}: {len(unusable)} video(s) of {subjects} subject(s) cannot be used:\n{listed}\n"
            "Replace them, or leave those subjects out with --cohort.skip_unusable true.")


@dataclass
class ExtractionReport:
    videos: int = 0
    cached: int = 0
    scored: int = 0
    checked: int = 0
    unusable: list[UnusableVideo] = field(default_factory=list)
    excluded_subjects: list[str] = field(default_factory=list)
    cache_folder: Path | None = None
    face_seconds: float = 0.0  # time spent checking videos (decoding, face path) and reading landmarks

    @property
    def unreadable(self) -> dict[str, str]:
        """Unusable videos by path (the reason)."""
        return {str(u.path): u.reason for u in self.unusable}

    @property
    def excluded(self) -> dict:
        """The subjects left out and why, as JSON-ready values for the run's outputs and W&B."""
        return {"count": len(self.excluded_subjects), "videos": [u.to_dict() for u in self.unusable]}

    def summary(self) -> str:
        return (
            f"{self.videos} videos: {self.cached} from cache, {self.scored} scored"
            + (f", {len(self.unusable)} unusable" if self.unusable else "")
            + (f", {len(self.excluded_subjects)} subject(s) left out" if self.excluded_subjects else "")
            + (f" (cache {self.cache_folder})" if self.cache_folder else "")
        )


def extract_intensities(
    datamodule: PDCohortDataModule,
    checkpoint: str | Path,
    contract: ScoringContract,
    cache_dir: str | Path,
    accelerator: str = "auto",
    devices: int | str = 1,
    onnx_model: str | Path | None = None,
    skip_unusable: bool = False,
    quality: QualityPolicy = QualityPolicy(),
    kinematics: KinematicsSettings | None = None,
) -> tuple[CohortIntensities, ExtractionReport]:
    """Fill the cache for every video of the cohort, then assemble per-subject (N, 4, 4) cosines.

    Videos still to be scored are checked first (see the module notes); ``skip_unusable`` leaves out
    the subjects of unusable videos instead of stopping, ``quality`` holds the limits that make a
    video unusable. With ``kinematics`` (enabled) the cohort also gets its (N, 4, 12)
    landmark kinematics.

    Videos already in the cache (same contract and video bytes) are not scored again; an interrupted
    run resumes because every video is written atomically as soon as it is scored. The contract's
    runtime scores them: PyTorch, or the ONNX export (``onnx_model``, by default the one ``dfer-pd
    export`` wrote beside the checkpoint), which runs on the CPU.
    """
    contract.check_checkpoint(checkpoint)
    if contract.runtime in ONNX_RUNTIMES:
        if accelerator not in {"auto", "cpu"}:
            raise ValueError(f"runtime {contract.runtime} runs on onnxruntime's CPU provider; "
                             f"got accelerator {accelerator!r}: use cpu (or runtime torch)")
        accelerator = "cpu"
    columns = contract.expression_columns()  # refuse a checkpoint without the four expressions up front
    cohort = datamodule.cohort
    cache = IntensityCache(cache_dir, contract)
    report = ExtractionReport(cache_folder=cache.folder)

    kinematics = kinematics if kinematics is not None and kinematics.enabled else None
    landmarks = LandmarkCache(landmark_cache_root(cache_dir), kinematics, contract.face) if kinematics else None

    digests: dict[tuple[str, str], str] = {}
    paths: dict[str, Path] = {}
    for subject in cohort.subjects:
        for expression in cohort.expressions:
            path = subject.videos[expression]
            digest = file_digest(path)
            digests[subject.subject_id, expression] = digest
            paths.setdefault(digest, path)
    manifest_problems = [*cohort.problems, *_repeated_recordings(cohort, digests)]
    report.videos = len(digests)
    problems = _check_videos(cohort, digests, paths, cache, contract, datamodule, landmarks, quality, report)
    report.unusable = [u for subject in cohort.subjects for e in cohort.expressions
                       for u in problems.get(digests[subject.subject_id, e], [])
                       if (u.subject_id, u.expression) == (subject.subject_id, e)]
    if manifest_problems:  # the manifest's problems and the videos', in one list: one round of fixes
        listed = [*manifest_problems, *(u.describe() for u in report.unusable)]
        prefix = f"{cohort.path}: "
        raise ManifestError(listed[0] if len(listed) == 1 else f"{cohort.path}: {len(listed)} problems:\n" + "\n".join(
            f"  {p.removeprefix(prefix)}" for p in listed), listed)
    if problems:
        for u in report.unusable:
            log.warning("unusable video: %s", u.describe())
        if not skip_unusable:
            raise UnusableVideosError(cohort.path, report.unusable)
        report.excluded_subjects = sorted({u.subject_id for u in report.unusable})
        kept = [s for s in cohort.subjects if s.subject_id not in set(report.excluded_subjects)]
        if not kept:
            raise UnusableVideosError(cohort.path, report.unusable)
        cohort = dataclasses.replace(cohort, subjects=kept)
    used = {digests[s.subject_id, e] for s in cohort.subjects for e in cohort.expressions}
    missing = [d for d in used if not cache.has(d)]
    report.cached = len(used) - len(missing)
    if missing:
        datamodule.set_videos_to_score([(d, paths[d]) for d in sorted(missing)], contract)
        writer = IntensityCacheWriter(cache)
        # Precision is the contract's, applied inside the scoring function, so the Trainer stays at 32-true.
        # Lightning's progress bar (videos scored, time left); DFER_PD_PROGRESS=0 switches it off.
        trainer = L.Trainer(accelerator=accelerator, devices=devices, logger=False, callbacks=[writer],
                            enable_progress_bar=progress_enabled(), enable_model_summary=False)
        trainer.predict(Stage1Scorer.from_checkpoint(checkpoint, contract, onnx_model=onnx_model), datamodule=datamodule,
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
    kinematic_features = None
    if landmarks is not None:
        started = time.perf_counter()
        kinematic_features = np.stack([
            subject_kinematics({e: _times_points(landmarks.get(subject.videos[e], digests[subject.subject_id, e]))
                                for e in cohort.expressions}, cohort.expressions)
            for subject in cohort.subjects])
        report.face_seconds += time.perf_counter() - started
    data = CohortIntensities(
        subject_ids=[s.subject_id for s in cohort.subjects],
        labels=np.array([s.label for s in cohort.subjects], dtype=np.int64),
        cosine=cosine,
        contract=contract,
        video_features=features,
        kinematics=kinematic_features,
        kinematics_settings=None if kinematics is None else dataclasses.asdict(kinematics),
        updrs_3_2=cohort.updrs_3_2,
        hoehn_yahr=cohort.hoehn_yahr,
    )
    return data, report


def _repeated_recordings(cohort, digests: dict[tuple[str, str], str]) -> list[str]:
    """A subject whose expressions are one recording (the same bytes under two names): manifest problems."""
    problems = []
    for subject in cohort.subjects:
        seen: dict[str, str] = {}
        for expression in cohort.expressions:
            digest = digests[subject.subject_id, expression]
            if digest in seen:
                first = seen[digest]
                problems.append(f"{cohort.path}: line {subject.line(expression)}: subject {subject.subject_id!r}'s "
                                f"{expression!r} video is the same recording as its {first!r} video (line "
                                f"{subject.line(first)}, identical content); each expression needs its own recording")
            seen.setdefault(digest, expression)
    return problems


def _times_points(landmark_track) -> tuple[np.ndarray, np.ndarray]:
    return landmark_track.times, landmark_track.points


def _as_is(item):
    return item


class _VideoChecks(Dataset):
    """Item ``i``: ``(digest, problems)`` of one video, read and judged exactly as scoring and the landmark
    pass will read it; a DataLoader runs them on the data module's worker processes (the face path and
    dlib hold Python's GIL, so threads would not overlap them)."""

    def __init__(self, jobs: list[tuple[str, Path, bool, bool]], contract: ScoringContract, face_cache,
                 landmarks: LandmarkCache | None, quality: QualityPolicy) -> None:
        self.jobs, self.contract, self.face_cache = jobs, contract, face_cache
        self.landmarks, self.quality = landmarks, quality

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> tuple[str, list[str]]:
        from dfer_pd.faces.tracking import NoFaceError
        from dfer_pd.stage1.quality import check_video

        digest, path, needs_scores, needs_landmarks = self.jobs[index]
        found = check_video(path, self.contract, self.face_cache, self.quality).reasons if needs_scores else []
        if needs_landmarks and not found:
            try:
                self.landmarks.get(path, digest)
            except NoFaceError as error:
                found = [f"no face found for the landmarks ({str(error).removeprefix(f'{path}: ')})"]
            except VideoReadError as error:
                found = [str(error).removeprefix(f"{path}: ")]
        return digest, list(found)


def _check_videos(cohort, digests, paths, cache, contract, datamodule, landmarks, quality,
                  report: ExtractionReport) -> dict[str, list[UnusableVideo]]:
    """Check every video that still needs scoring or landmarks; ``{digest: [problems]}`` for the unusable ones."""
    from dfer_pd.faces.cache import FaceCropCache

    started = time.perf_counter()
    face_cache = FaceCropCache(datamodule.hparams.face_crop_cache) if datamodule.hparams.face_crop_cache else None
    jobs = []
    for digest, path in paths.items():
        needs_scores = not cache.has(digest)
        needs_landmarks = landmarks is not None and not landmarks.has(digest)
        if needs_scores or needs_landmarks:
            jobs.append((digest, path, needs_scores, needs_landmarks))
    report.checked += len(jobs)
    reasons: dict[str, list[str]] = {}
    if jobs:
        checks = _VideoChecks(jobs, contract, face_cache, landmarks, quality)
        workers = min(int(datamodule.hparams.num_workers), len(jobs))
        # Workers start by forkserver, not fork: this process may hold threads (the scoring path's
        # preparation pool, W&B, Lightning), and a child forked while one of them holds a lock hung.
        loader = DataLoader(checks, batch_size=None, num_workers=workers, collate_fn=_as_is,
                            multiprocessing_context=process_context() if workers > 0 else None)
        for digest, found in track(loader, len(jobs), "checking videos (faces, landmarks)", "video"):
            if found:
                reasons[digest] = found
    report.face_seconds += time.perf_counter() - started
    problems: dict[str, list[UnusableVideo]] = {}
    for subject in cohort.subjects:
        for expression in cohort.expressions:
            digest = digests[subject.subject_id, expression]
            for reason in reasons.get(digest, []):
                problems.setdefault(digest, []).append(UnusableVideo(
                    subject.subject_id, expression, subject.videos[expression], subject.line(expression), reason))
    return problems
