"""Per-video quality flags for the screening report: is this video fit to be scored?

A screening result is only as good as the videos behind it, so the report lists, per video, the
share of sampled frames showing the face, brightness, sharpness and duration, and flags the ones
outside the range the model was built for. The flags warn; they do not stop scoring.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import numpy as np

from dfer_pd.screening.faces import FaceTrackReport
from dfer_pd.common.video import VideoReadError, _existing_path, _open_video, _video_stream, count_frames

# Mean luma (0..255, Rec. 601) under which facial detail sinks into sensor noise and
# compression: the intensity network saw lit faces (DFEW films, PD-FEV used a lamp).
TOO_DARK_BRIGHTNESS = 40.0
# Mean luma above which skin and highlights clip to white and expression folds vanish.
TOO_BRIGHT_BRIGHTNESS = 220.0
# Variance of the Laplacian, measured after scaling each frame to a 224-pixel shorter side (the
# model's input), below which a frame counts as blurred. A sharp 224-px face crop of
# scikit-image's astronaut scores about 330, the same blurred with a Gaussian of sigma 1 about 44
# and of sigma 2 about 9: the threshold flags blur beyond sigma ~1.5, which smooths away the
# wrinkles and folds that separate expression intensities.
BLURRY_LAPLACIAN_VARIANCE = 15.0
# The paper's protocol asks for each expression held for more than five seconds.
MIN_DURATION_SECONDS = 5.0
# Share of sampled frames with the face under which the intensities rest on interpolated crops.
# Videos below read_face_clip's min_face_fraction (0.5) are rejected outright; between the two
# they are scored but flagged.
FEW_FACES_FRACTION = 0.8

QUALITY_SIDE = 224


def video_duration(path: str | Path) -> float:
    """Length of a video file in seconds, from its container.

    Uses the video stream's duration, else the container's, else frames over frame rate.
    Raises :class:`VideoReadError` for files that are missing, unreadable or have no video.
    """
    path = _existing_path(path)
    if path.is_dir():
        raise VideoReadError(f"{path}: is a folder of frames, which has no duration")
    try:
        with _open_video(path) as container:
            stream = _video_stream(path, container)
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / av.time_base
            rate = stream.average_rate or stream.guessed_rate
    except av.error.FFmpegError as error:
        raise VideoReadError(f"{path}: cannot read video duration ({error})") from error
    if not rate:
        raise VideoReadError(f"{path}: container gives neither a duration nor a frame rate")
    return count_frames(path) / float(rate)


def _luma(frames: np.ndarray) -> list[np.ndarray]:
    return [cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY) for frame in frames]


def mean_brightness(frames: np.ndarray) -> float:
    """Mean Rec. 601 luma of RGB uint8 frames ``(T, H, W, 3)``, 0..255."""
    return float(np.mean([gray.mean() for gray in _luma(frames)]))


def blur_score(frames: np.ndarray) -> float:
    """Median over frames of the variance of the Laplacian at a 224-pixel shorter side (low = blurred).

    Scaling to the model's input size first judges sharpness as the model will see it: a small
    face blown up to 224 pixels scores as blurred. The median ignores a few frames smeared by
    motion.
    """
    scores = []
    for gray in _luma(frames):
        scale = QUALITY_SIDE / min(gray.shape)
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        scores.append(cv2.Laplacian(cv2.resize(gray, size, interpolation=interpolation), cv2.CV_64F).var())
    return float(np.median(scores))


def video_quality(
    path: str | Path,
    frames: np.ndarray,
    face_report: FaceTrackReport | None = None,
    duration_seconds: float | None = None,
) -> dict:
    """Quality measures and flags of one video, for the diagnose report.

    Args:
        path: the video (its duration is read from the container unless given).
        frames: its sampled RGB uint8 frames ``(T, H, W, 3)``; face crops give the fairest
            brightness and blur (the background does not count).
        face_report: the face tracker's report; without it the face measures are None and
            ``few_faces`` is False.
        duration_seconds: the video's length, when already known (frame folders have none).

    Returns a JSON-ready dict: ``face_fraction``, ``brightness``, ``blur``, ``duration_seconds``
    and the flags ``too_dark``, ``too_bright``, ``blurry``, ``too_short``, ``few_faces``,
    ``multiple_faces``, plus ``flags``: the names of the raised ones.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"{path}: frames must be a non-empty uint8 array (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if duration_seconds is None and not Path(path).is_dir():
        duration_seconds = video_duration(path)
    brightness = mean_brightness(frames)
    blur = blur_score(frames)
    face_fraction = None if face_report is None else float(face_report.face_fraction)
    quality = {
        "path": str(path),
        "face_fraction": face_fraction,
        "num_faces_max": None if face_report is None else int(face_report.num_faces_max),
        "brightness": brightness,
        "blur": blur,
        "duration_seconds": duration_seconds,
        "too_dark": brightness < TOO_DARK_BRIGHTNESS,
        "too_bright": brightness > TOO_BRIGHT_BRIGHTNESS,
        "blurry": blur < BLURRY_LAPLACIAN_VARIANCE,
        "too_short": duration_seconds is not None and not math.isnan(duration_seconds)
        and duration_seconds < MIN_DURATION_SECONDS,
        "few_faces": face_fraction is not None and face_fraction < FEW_FACES_FRACTION,
        "multiple_faces": face_report is not None and face_report.num_faces_max > 1,
    }
    quality["flags"] = [name for name, value in quality.items() if value is True]
    return quality
