"""Screening one person: four expression videos -> a verdict, quality per video, under the screening model's contract.

The verdict is POSITIVE or NEGATIVE (p(PD) against the model's threshold) only when every input
passes; otherwise it is INCONCLUSIVE and names its reasons: a video that cannot be used (no face,
truncated, a still image: :func:`dfer_pd.stage1.quality.check_video`), or an asked expression that
stage 1 does not recognise above the threshold stored with the screening model. A research
screening aid, not a diagnosis: every headline and report says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.common.video import VIDEO_SUFFIXES, VideoReadError
from dfer_pd.stage1.quality_policy import QualityPolicy
from dfer_pd.faces.cache import FaceCropCache
from dfer_pd.faces.tracking import NoFaceError
from dfer_pd.stage1.quality import check_video
from dfer_pd.stage1.contract import ContractError, ScoringContract
from dfer_pd.stage1.scoring import Stage1Scorer, expression_cosines, in_background
from dfer_pd.stage2.cohort import EXPRESSION_ALIASES
from dfer_pd.stage2.screening_model import ScreeningModel, asked_probabilities

DISCLAIMER = "Research screening aid, not a diagnosis: discuss any concern with a neurologist."


class DiagnoseInputError(ValueError):
    """The videos given to diagnose are missing, ambiguous, or do not cover the four expressions."""


def find_expression_videos(folder: str | Path | None = None, **explicit: str | None) -> dict[str, Path]:
    """One video per expression: explicit paths win; otherwise files in `folder` named after the expression
    (`happiness.mp4`, `happy.mov`, `S001_anger.mp4` ...)."""
    videos: dict[str, Path] = {}
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise DiagnoseInputError(f"{folder} is not a folder of expression videos")
        names = {**{e: e for e in EXPRESSIONS}, **EXPRESSION_ALIASES}
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            tokens = path.stem.lower().replace("-", "_").split("_")
            matches = {names[t] for t in tokens if t in names}
            for expression in matches:
                if expression in videos:
                    raise DiagnoseInputError(f"{folder}: two videos for {expression}: {videos[expression].name} and {path.name}")
                videos[expression] = path
    for expression, path in explicit.items():
        if path:
            videos[expression] = Path(path)
    missing = [e for e in EXPRESSIONS if e not in videos]
    if missing:
        raise DiagnoseInputError(
            f"no video for {', '.join(missing)}" + (f" in {folder}" if folder else "")
            + f": name files after the expression ({', '.join(EXPRESSIONS)}) or pass --<expression> PATH"
        )
    for expression, path in videos.items():
        if not path.is_file():
            raise DiagnoseInputError(f"{path} ({expression} video) does not exist")
    return {e: videos[e] for e in EXPRESSIONS}


VERDICTS: tuple[str, ...] = ("POSITIVE", "NEGATIVE", "INCONCLUSIVE")


@dataclass
class Diagnosis:
    """One person's screening. ``p_pd`` and ``cosine`` are None when the videos were not scored
    (an unusable video makes the verdict INCONCLUSIVE before stage 1 runs)."""

    p_pd: float | None
    threshold: float
    cosine: np.ndarray | None  # (4, 4): [asked expression, EXPRESSIONS class]
    contract: ScoringContract
    quality: dict[str, dict]
    videos: dict[str, Path]
    seconds: float
    reasons: list[str] = field(default_factory=list)  # why the verdict is INCONCLUSIVE (empty otherwise)
    kinematics: np.ndarray | None = None  # (4, 12) landmark kinematics, when the screening model has their settings

    @property
    def tau(self) -> float:
        return self.contract.tau

    @property
    def inconclusive(self) -> bool:
        return bool(self.reasons) or self.p_pd is None

    @property
    def positive(self) -> bool:
        """Screening positive: a conclusive verdict with p(PD) at or above the threshold."""
        return not self.inconclusive and self.p_pd >= self.threshold

    @property
    def verdict(self) -> str:
        if self.inconclusive:
            return "INCONCLUSIVE"
        return "POSITIVE" if self.positive else "NEGATIVE"

    def headline(self) -> str:
        flagged = sum(bool(q["flags"]) for q in self.quality.values())
        if self.inconclusive:
            return (f"screening INCONCLUSIVE: {'; '.join(self.reasons)}. No verdict is given until every video "
                    f"passes. {DISCLAIMER}")
        verdict = "screening POSITIVE (PD-like hypomimia)" if self.positive else "screening negative"
        return (f"p(PD) = {self.p_pd:.3f} (threshold {self.threshold:.2f}): {verdict}; "
                f"{flagged} of 4 videos with quality flags. {DISCLAIMER}")


def diagnose(
    videos: dict[str, Path],
    stage1_checkpoint: str | Path | Stage1Scorer,
    screening_model: str | Path | ScreeningModel,
    device: str = "cpu",
    crop_faces: bool | None = None,
    face_detector: str | None = None,
    precision: str | None = None,
    face_cache: FaceCropCache | None = None,
    runtime: str | None = None,
    quality: QualityPolicy = QualityPolicy(),
) -> Diagnosis:
    """Check the four videos, score them exactly as the screening model's cohort was scored, then classify.

    The preprocessing is the screening model's scoring contract; ``crop_faces``, ``face_detector`` and
    ``precision`` are only checks: a value that disagrees with the contract is refused. ``runtime``
    (``torch``, ``onnx``, ``onnx-int8``) picks who runs stage 1; None: the export's own when
    ``stage1_checkpoint`` is a ``.onnx`` file, else the contract's. A loaded :class:`Stage1Scorer` may
    be passed instead of a path (a server screening many people loads it once). ``quality`` holds the limits
    that make a video unusable (a truncated video decoding too little of itself).
    """
    started = time.perf_counter()
    model = screening_model if isinstance(screening_model, ScreeningModel) else ScreeningModel.load(screening_model)
    name = str(model.source or "the screening model")
    contract = model.scoring_contract().with_overrides(
        name, crop_faces=crop_faces, face_detector=face_detector, precision=precision)
    if isinstance(stage1_checkpoint, Stage1Scorer):
        scorer = stage1_checkpoint
        if replace(scorer.contract, runtime=contract.runtime) != contract or runtime not in (None, scorer.contract.runtime):
            raise ContractError(f"the loaded stage-1 scorer runs {scorer.contract.describe()}, not the contract of {name}")
    else:
        scorer = Stage1Scorer.for_contract(stage1_checkpoint, contract, runtime, device, source=name)
    contract = scorer.contract
    # Every video is read and judged exactly as scoring reads it, on threads: while one that passed is scored
    # (one forward pass per video, as extraction scores it: bit-identical cosines), the next are being read.
    # The scores count only if all four pass.
    checks, scored = {}, {}
    judged = in_background(lambda e: check_video(videos[e], contract, face_cache, quality), EXPRESSIONS)
    for expression, check in zip(EXPRESSIONS, judged):
        checks[expression] = check
        if not any(c.reasons for c in checks.values()):
            scored[expression] = scorer.runtime(check.clip.pixel_values[None].to(scorer.device))
    quality = {e: c.quality or {"path": str(videos[e]), "flags": ["unreadable"], "reasons": c.reasons}
               for e, c in checks.items()}
    reasons = [f"{e} video ({Path(videos[e]).name}): {r}" for e, c in checks.items() for r in c.reasons]
    result = Diagnosis(p_pd=None, threshold=model.threshold, cosine=None, contract=contract, quality=quality,
                       videos=videos, seconds=0.0, reasons=reasons)
    if reasons:
        result.seconds = time.perf_counter() - started
        return result
    scores = [scored[e] for e in EXPRESSIONS]
    full = np.concatenate([s.cosine for s in scores])
    result.cosine = cosine = expression_cosines(full, contract)
    asked = asked_probabilities(cosine, contract.tau)
    for j, expression in enumerate(EXPRESSIONS):
        entry = quality[expression]
        entry["recognised_expression"] = contract.class_names[int(full[j].argmax())]
        entry["asked_probability"] = float(asked[j])
        if model.recognition_threshold is not None and asked[j] < model.recognition_threshold:
            entry["flags"] = [*entry["flags"], "expression_not_recognised"]
            reason = (f"stage 1 does not recognise {expression} (probability {asked[j]:.2g}, below the screening "
                      f"model's threshold {model.recognition_threshold:.2g})")
            entry["reasons"] = [*entry["reasons"], reason]
            reasons.append(f"{expression} video ({Path(videos[expression]).name}): {reason}")
    if model.kinematics_settings:
        result.kinematics = _person_kinematics(videos, model, reasons)
    if not reasons:
        result.p_pd = float(model.predict_proba(cosine, result.kinematics if model.uses_kinematics else None))
    result.seconds = time.perf_counter() - started
    return result


def _person_kinematics(videos: dict[str, Path], model: ScreeningModel, reasons: list[str]) -> np.ndarray | None:
    """The person's (4, 12) landmark kinematics, read as the cohort's were; a failure is a reason only when the model needs them."""
    from dfer_pd.stage2.kinematics import subject_kinematics, video_landmarks
    from dfer_pd.stage2.settings import KinematicsSettings

    settings = KinematicsSettings(**model.kinematics_settings)
    tracks = {}
    for expression in EXPRESSIONS:
        try:
            track = video_landmarks(videos[expression], settings, model.scoring_contract().face)
        except (NoFaceError, VideoReadError) as error:
            if model.uses_kinematics:
                reasons.append(f"{expression} video ({Path(videos[expression]).name}): no landmarks ({error})")
            return None
        tracks[expression] = (track.times, track.points)
    return subject_kinematics(tracks)
