"""Is this video fit to be scored? Quality measures, flags, and the reasons that make a video unusable.

A screening result is only as good as the videos behind it. Per video the report lists the share of
sampled frames showing the face, brightness, sharpness, motion, duration and decode integrity, and
flags the ones outside the range the model was built for. Some findings make a video *unusable*
(:func:`unusable_reasons`): no face, a file truncated beyond the accepted share, a still image (an
expression needs motion). ``diagnose`` then answers INCONCLUSIVE, and cohort extraction lists the
video (or skips its subject with ``--cohort.skip_unusable true``); the other flags only warn.

Brightness, blur and motion and their thresholds are the face path's (:mod:`dfer_pd.faces.measures`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from dfer_pd.common.video import TruncatedVideoError, VideoReadError, video_duration
from dfer_pd.stage1.quality_policy import QualityPolicy
from dfer_pd.faces.measures import (
    BLURRY_LAPLACIAN_VARIANCE,
    STILL_IMAGE_MOTION,
    TOO_BRIGHT_BRIGHTNESS,
    TOO_DARK_BRIGHTNESS,
    face_measures,
)

if TYPE_CHECKING:
    from dfer_pd.faces.settings import FaceCropSettings
    from dfer_pd.faces.tracking import FaceTrackReport
    from dfer_pd.stage1.contract import ScoringContract
    from dfer_pd.stage1.scoring import PreparedClip

# The paper's protocol asks for each expression held for more than five seconds.
MIN_DURATION_SECONDS = 5.0
# Share of sampled frames with the face under which the intensities rest on interpolated crops.
# Videos below the face path's min_face_fraction (0.5) are unusable; between the two they are
# scored but flagged.
FEW_FACES_FRACTION = 0.8
# Face crops given as videos (no cropping) are enlarged to at least this side before the check
# that they show a face: the detector looks for faces of 80 pixels and more.
CHECK_SIDE = 160
# dlib score threshold of that check: a video given as a face crop only has to show *a* face, and
# enlarged 32-pixel crops score lower than faces filmed at that size. On the 109 non-face images of
# `benchmarks/bench_faces.py` it fires on 4 (at 0: none); colour bars and blank frames stay faceless.
CROP_CHECK_THRESHOLD = -0.5

# Flags that make a video unusable, with the reason shown to the user.
UNUSABLE_FLAGS: dict[str, str] = {
    "no_face": "no face found",
    "truncated_beyond_limit": "truncated",
    "still_image": "a still image, not a video (an expression needs motion)",
}


# --------------------------------------------------------------------------- flags


def video_quality(
    path: str | Path,
    frames: np.ndarray,
    face_report: FaceTrackReport | None = None,
    duration_seconds: float | None = None,
    decode: dict | None = None,
    policy: QualityPolicy = QualityPolicy(),
) -> dict:
    """Quality measures and flags of one video, for the diagnose report and the cohort check.

    Args:
        path: the video (its duration is read from the container unless given).
        frames: its sampled RGB uint8 frames ``(T, H, W, 3)``: the face crops, or the frames of a video
            that is already a face crop. Used for the measures when ``face_report`` carries none.
        face_report: the face tracker's report; its ``measures`` (taken on the face region of the
            source frames) are preferred; without a report the face measures are None.
        duration_seconds: the video's length, when already known (frame folders have none).
        decode: the reader's findings (``truncated``, ``decoded_share``), else ``face_report.decode``.
        policy: the limits that make a video unusable (a truncated video decoding too little of itself).

    Returns a JSON-ready dict: ``face_fraction``, ``num_faces_max``, ``brightness``, ``blur``,
    ``motion``, ``duration_seconds``, ``decoded_share``; the flags ``too_dark``, ``too_bright``,
    ``blurry``, ``too_short``, ``few_faces``, ``multiple_faces``, ``truncated``,
    ``truncated_beyond_limit``, ``still_image``; ``flags`` (the raised ones) and ``reasons`` (what
    makes the video unusable, empty when usable).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"{path}: frames must be a non-empty uint8 array (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if duration_seconds is None and not Path(path).is_dir():
        duration_seconds = video_duration(path)
    measures = getattr(face_report, "measures", None) or face_measures(frames)
    decode = decode or getattr(face_report, "decode", None) or {}
    share = float(decode.get("decoded_share", 1.0))
    truncated = bool(decode.get("truncated", False))
    face_fraction = None if face_report is None else float(face_report.face_fraction)
    clip_length = decode.get("clip_length")
    quality = {
        "path": str(path),
        "face_fraction": face_fraction,
        "num_faces_max": None if face_report is None else int(face_report.num_faces_max),
        "brightness": measures["brightness"],
        "blur": measures["blur"],
        "motion": measures["motion"],
        "duration_seconds": duration_seconds,
        "decoded_share": share,
        "too_dark": measures["brightness"] < TOO_DARK_BRIGHTNESS,
        "too_bright": measures["brightness"] > TOO_BRIGHT_BRIGHTNESS,
        "blurry": measures["blur"] < BLURRY_LAPLACIAN_VARIANCE,
        "too_short": duration_seconds is not None and not math.isnan(duration_seconds)
        and duration_seconds < MIN_DURATION_SECONDS,
        "few_faces": face_fraction is not None and face_fraction < FEW_FACES_FRACTION,
        "multiple_faces": face_report is not None and face_report.num_faces_max > 1,
        "truncated": truncated,
        "truncated_beyond_limit": truncated and share < policy.min_decoded_share,
        "still_image": clip_length == 1 or measures["motion"] < STILL_IMAGE_MOTION,
    }
    quality["flags"] = [name for name, value in quality.items() if value is True]
    quality["reasons"] = unusable_reasons(quality, policy)
    return quality


def unusable_reasons(quality: dict, policy: QualityPolicy = QualityPolicy()) -> list[str]:
    """The findings of :func:`video_quality` that make a video unusable, as sentences."""
    reasons = []
    for flag, reason in UNUSABLE_FLAGS.items():
        if quality.get(flag):
            if flag == "truncated_beyond_limit":
                reason = (f"truncated: only {quality['decoded_share']:.0%} of its frames decode "
                          f"(at least {policy.min_decoded_share:.0%} needed)")
            reasons.append(reason)
    return reasons


# --------------------------------------------------------------------------- the check before scoring


@dataclass
class VideoCheck:
    """One video checked before scoring: usable or not, why, its quality, and the prepared clip (when readable)."""

    path: Path
    reasons: list[str] = field(default_factory=list)
    quality: dict | None = None
    clip: PreparedClip | None = None

    @property
    def usable(self) -> bool:
        return not self.reasons


def _face_in_crops(frames: np.ndarray, settings: FaceCropSettings, source: str | Path) -> None:
    """Raise NoFaceError unless videos given as face crops show a face (enlarged so the detector can see it)."""
    from dfer_pd.faces.tracking import build_detector, detector_for, follow_face

    scale = CHECK_SIDE / min(frames.shape[1:3])
    if scale > 1:
        size = (round(frames.shape[2] * scale), round(frames.shape[1] * scale))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])
    detector = (build_detector("dlib", settings.fallback_detector, min(settings.detector_threshold, CROP_CHECK_THRESHOLD))
                if settings.detector == "dlib" else detector_for(settings))
    follow_face(frames, settings, detector=detector, landmarks=False, source=source)


def check_video(
    path: str | Path,
    contract: ScoringContract,
    face_cache=None,
    policy: QualityPolicy = QualityPolicy(),
    duration_seconds: float | None = None,
) -> VideoCheck:
    """Read ``path`` exactly as scoring will (the contract's :func:`~dfer_pd.stage1.scoring.prepare_clip`) and judge it.

    Unreadable files, no face (also in videos given as face crops), truncation beyond
    ``policy`` and still images make it unusable, each with its reason; the prepared clip
    is kept so that scoring need not read the video again.
    """
    from dfer_pd.faces.tracking import NoFaceError
    from dfer_pd.stage1.scoring import prepare_clip

    path = Path(path)
    try:
        clip = prepare_clip(path, contract, face_cache)
    except NoFaceError as error:
        quality = {"path": str(path), "flags": ["no_face"], "reasons": [f"no face found ({_after_path(error, path)})"]}
        decode = getattr(error, "decode", None) or {}
        if decode.get("truncated"):
            share = float(decode.get("decoded_share", 1.0))
            quality["flags"].append("truncated")
            if share < policy.min_decoded_share:
                quality["reasons"].append(unusable_reasons(
                    {"truncated_beyond_limit": True, "decoded_share": share}, policy)[0])
        return VideoCheck(path, list(quality["reasons"]), quality)
    except VideoReadError as error:
        flag = "truncated" if isinstance(error, TruncatedVideoError) else "unreadable"
        reasons = [_after_path(error, path)]
        return VideoCheck(path, reasons, {"path": str(path), "flags": [flag], "reasons": reasons})
    quality = video_quality(path, clip.frames, clip.face_report, duration_seconds, clip.decode, policy)
    reasons = list(quality["reasons"])
    if not contract.face.crop_faces:
        try:
            _face_in_crops(clip.frames, contract.face, path)
        except NoFaceError as error:
            reasons.insert(0, f"no face found ({_after_path(error, path)})")
            quality["flags"].append("no_face")
    quality["reasons"] = reasons
    return VideoCheck(path, reasons, quality, clip)


def _after_path(error: Exception, path: Path) -> str:
    """The error's message without the leading ``<path>: `` (the caller names the file)."""
    message = str(error)
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message
