"""Screening one person: four expression videos -> a verdict, quality per video, under the screening model's contract.

The verdict is POSITIVE or NEGATIVE (p(PD) against the model's threshold) only when every input
passes; otherwise it is INCONCLUSIVE, names every reason and says what to do: a video that cannot be
used (no face, truncated, unreadable, a still image: :func:`dfer_pd.stage1.quality.check_video`), one
recording given for two expressions, a file that shows another expression confidently (probably
swapped), or recordings unlike the training cohort's (the screening model's out-of-distribution check,
:mod:`dfer_pd.stage2.typicality`). Weak expression is the disease's signal and never a reason to refuse.
A research screening aid, not a diagnosis: every headline and report says so.
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
from dfer_pd.common.files import file_digest
from dfer_pd.screening.inputs import DiagnoseInputError, find_expression_videos  # noqa: F401 - part of this module's interface
from dfer_pd.stage2.screening_model import ScreeningModel
from dfer_pd.stage2.severity_estimator import NOTE as SEVERITY_NOTE
from dfer_pd.stage2.typicality import expression_probabilities, swapped_files

DISCLAIMER = "Research screening aid, not a diagnosis: discuss any concern with a neurologist."
EXIT_INCONCLUSIVE = 3
"""`dfer-pd diagnose` exits 0 with a verdict, 3 when INCONCLUSIVE (2: a usage or input error)."""
ADVICE: dict[str, str] = {
    "no_face": "film the face from the front, the whole face in view",
    "few_faces": "film the face from the front, the whole face in view",
    "multiple_faces": "film one person at a time",
    "too_dark": "record in even, bright light",
    "too_bright": "record in even light, out of direct sun or a lamp's glare",
    "blurry": "hold the camera still and in focus",
    "still_image": "record a video, not a photo",
    "unreadable": "give the original video file (mp4, mov, webm ...)",
    "truncated": "copy or export the whole video file again",
    "too_short": "hold each expression for at least 5 seconds",
    "same_recording": "record each expression as its own video",
    "other_expression": "check that each file is given as the expression it shows",
    "atypical": "record as the protocol asks (face to the camera, even light, each expression its own video); "
                "if it persists, this person's recordings are outside what the model was trained on",
}
"""What to do about each flag that stops a verdict, said once at the end of an INCONCLUSIVE answer."""


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
    typicality: dict | None = None  # the out-of-distribution check (TypicalityCheck.to_dict), when it ran
    severity: dict | None = None  # the estimated MDS-UPDRS 3.2, only with a verdict from a model trained with severity

    def severity_line(self) -> str | None:
        """The estimated MDS-UPDRS 3.2 score with its cross-validated error, as a research estimate; None when
        INCONCLUSIVE or when the screening model was trained without severity."""
        return None if self.inconclusive or not self.severity else self.severity["line"]

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

    def advice(self) -> list[str]:
        """What to do about what stopped the verdict, each piece once."""
        flags = [f for q in self.quality.values() for f in q.get("flags", [])]
        if (self.typicality or {}).get("atypical"):
            flags.append("atypical")
        return list(dict.fromkeys(ADVICE[f] for f in flags if f in ADVICE and self.inconclusive))

    def headline(self) -> str:
        flagged = sum(bool(q["flags"]) for q in self.quality.values())
        if self.inconclusive:
            advice = "; ".join(self.advice()) or "record the four videos again as the protocol asks"
            return (f"screening INCONCLUSIVE: {'; '.join(self.reasons)}. No verdict is given until every video "
                    f"passes. What to do: {advice}. {DISCLAIMER}")
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
    report = {e: c.quality for e, c in checks.items()}
    reasons = [f"{e} video ({Path(videos[e]).name}): {r}" for e, c in checks.items() for r in c.reasons]
    reasons += _repeated_recordings(videos, checks, report)
    result = Diagnosis(p_pd=None, threshold=model.threshold, cosine=None, contract=contract, quality=report,
                       videos=videos, seconds=0.0, reasons=reasons)
    if reasons:
        result.seconds = time.perf_counter() - started
        return result
    full = np.concatenate([scored[e].cosine for e in EXPRESSIONS])
    result.cosine = cosine = expression_cosines(full, contract)
    reasons += _recognised_expressions(cosine, full, contract, videos, report)
    if model.typicality is not None:
        features = (np.concatenate([scored[e].video_features for e in EXPRESSIONS])
                    if model.typicality.feature == "video_features" else cosine)
        check = model.typicality.check(features)
        result.typicality = check.to_dict()
        if check.atypical:
            for expression in check.atypical_videos:
                report[expression]["flags"] = [*report[expression]["flags"], "atypical"]
            reasons.append(check.reason())
    if model.kinematics_settings:
        result.kinematics = _person_kinematics(videos, model, reasons)
    if not reasons:
        result.p_pd = float(model.predict_proba(cosine, result.kinematics if model.uses_kinematics else None))
        if model.severity is not None:  # with a verdict only, never when INCONCLUSIVE
            score = model.estimate_severity(cosine, result.kinematics)
            result.severity = {"score": score, "line": model.severity.describe(score), "note": SEVERITY_NOTE,
                               "model": model.severity.performance(), "cross_validated": model.severity.cv}
    result.seconds = time.perf_counter() - started
    return result


def _repeated_recordings(videos: dict[str, Path], checks: dict, report: dict[str, dict]) -> list[str]:
    """Reasons for videos that are one recording given twice: the same file content, or the same decoded frames."""
    digests = {e: file_digest(videos[e]) for e in EXPRESSIONS}
    reasons = []
    for i, first in enumerate(EXPRESSIONS):
        for second in EXPRESSIONS[i + 1:]:
            clips = checks[first].clip, checks[second].clip
            same_frames = all(c is not None for c in clips) and np.array_equal(clips[0].frames, clips[1].frames)
            if digests[first] == digests[second] or same_frames:
                how = "identical file content" if digests[first] == digests[second] else "identical decoded frames"
                for expression in (first, second):
                    if "same_recording" not in report[expression]["flags"]:
                        report[expression]["flags"] = [*report[expression]["flags"], "same_recording"]
                reasons.append(f"the {first} and {second} videos ({Path(videos[first]).name}, {Path(videos[second]).name})"
                               f" are the same recording ({how})")
    return reasons


def _recognised_expressions(cosine: np.ndarray, full: np.ndarray, contract: ScoringContract,
                            videos: dict[str, Path], report: dict[str, dict]) -> list[str]:
    """Record what stage 1 recognises in each video; refuse only a likely swapped file.

    A weak asked expression is the disease's signal and never a reason to refuse. A video is refused only
    when a different, non-neutral expression wins with at least
    :data:`~dfer_pd.stage2.typicality.SWAPPED_FILE_PROBABILITY`.
    """
    probabilities = expression_probabilities(cosine, contract.tau)  # (asked video, expression)
    swapped = swapped_files(cosine, contract.tau)
    reasons = []
    for j, expression in enumerate(EXPRESSIONS):
        entry = report[expression]
        winner = int(probabilities[j].argmax())
        entry["recognised_expression"] = EXPRESSIONS[winner]
        entry["recognised_probability"] = float(probabilities[j, winner])
        entry["asked_probability"] = float(probabilities[j, j])
        entry["recognised_class"] = contract.class_names[int(full[j].argmax())]  # over all of stage 1's classes
        if swapped[j]:
            entry["flags"] = [*entry["flags"], "other_expression"]
            reason = (f"stage 1 sees {EXPRESSIONS[winner]} (probability {probabilities[j, winner]:.2f}), not {expression}: "
                      "probably another expression's file")
            entry["reasons"] = [*entry["reasons"], reason]
            reasons.append(f"{expression} video ({Path(videos[expression]).name}): {reason}")
    return reasons


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
