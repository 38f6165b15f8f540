"""Image measures of the face region: brightness, sharpness (blur) and motion, with their thresholds.

Measured on the face region of the *source* frames (reduced to at most :data:`MEASURE_SIDE` pixels,
never enlarged), not on the model's small input crops: a crop blown up from a small face looks
blurred whatever the camera recorded. The quality flags (:mod:`dfer_pd.stage1.quality`) read them.
"""

from __future__ import annotations

import cv2
import numpy as np

# Mean luma (0..255, Rec. 601) of the face under which facial detail sinks into sensor noise and
# compression: the intensity network saw lit faces (DFEW films, PD-FEV used a lamp).
TOO_DARK_BRIGHTNESS = 40.0
# Mean luma above which skin and highlights clip to white and expression folds vanish.
TOO_BRIGHT_BRIGHTNESS = 220.0
# Face regions larger than this are reduced to it (area averaging) before blur and motion are
# measured; smaller ones are measured as recorded.
MEASURE_SIDE = 256
# Variance of the Laplacian of the face region below which it counts as blurred. Measured with
# `python benchmarks/bench_quality.py` on real faces shipped by installed packages (scikit-image's
# astronaut, matplotlib's Grace Hopper, faces 87-215 px wide): sharp 850-2400; Gaussian blur of
# sigma 1 px 91-171, sigma 2 px 18-35, sigma 3 px 8-16. 40 flags blur of sigma 2 and more, which
# smooths away the folds that separate expression intensities, and keeps sharp and slightly soft faces.
BLURRY_LAPLACIAN_VARIANCE = 40.0
# Largest mean absolute luma change (0..255) between the sampled frames, below which the video is a
# still image (`benchmarks/bench_quality.py`): an mp4 of one repeated photo measures 0.001, the photo
# with added sensor noise (std 1) 0.02, the photo moved by one pixel 11; a live face moves (blinks,
# breathing, the head).
STILL_IMAGE_MOTION = 0.25


def _luma(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def region(gray: np.ndarray, box: np.ndarray | None, max_side: int = MEASURE_SIDE) -> np.ndarray:
    """The part of ``gray`` inside ``box`` (``x0, y0, x1, y1``, clipped to the picture; None = all),
    reduced with area averaging to at most ``max_side`` pixels, never enlarged."""
    if box is not None:
        height, width = gray.shape
        x0, y0 = max(int(round(box[0])), 0), max(int(round(box[1])), 0)
        x1, y1 = min(int(round(box[2])), width), min(int(round(box[3])), height)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            gray = gray[y0:y1, x0:x1]
    scale = max_side / max(gray.shape)
    if scale < 1:
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray


def mean_brightness(frames: np.ndarray, boxes: np.ndarray | None = None) -> float:
    """Mean Rec. 601 luma (0..255) of RGB uint8 frames ``(T, H, W, 3)``, inside ``boxes`` ``(T, 4)`` if given."""
    return float(np.mean([region(_luma(f), None if boxes is None else boxes[t]).mean() for t, f in enumerate(frames)]))


def blur_score(frames: np.ndarray, boxes: np.ndarray | None = None) -> float:
    """Median over frames of the variance of the Laplacian of the (face) region; low = blurred.

    The region is measured at source resolution, reduced to at most :data:`MEASURE_SIDE` pixels so
    that a large sharp face is not judged by its smooth skin at full size. The median ignores a few
    frames smeared by motion.
    """
    scores = [cv2.Laplacian(region(_luma(f), None if boxes is None else boxes[t]), cv2.CV_64F).var()
              for t, f in enumerate(frames)]
    return float(np.median(scores))


def frame_motion(frames: np.ndarray, box: np.ndarray | None = None) -> float:
    """Largest mean absolute luma difference between the first frame and any other, inside one fixed ``box``.

    0 for a single frame. A photo encoded as a video scores ~0; a live face does not.
    """
    grays = [region(_luma(f), box).astype(np.float32) for f in frames]
    if len(grays) < 2:
        return 0.0
    return float(max(np.abs(g - grays[0]).mean() for g in grays[1:]))


def face_measures(frames: np.ndarray, face_boxes: np.ndarray | None = None) -> dict[str, float]:
    """Brightness, blur and motion of the face region of source frames ``(T, H, W, 3)`` (the whole frame without boxes)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty uint8 array (T, H, W, 3), got {frames.dtype} {frames.shape}")
    boxes = None if face_boxes is None else np.asarray(face_boxes, dtype=np.float64)[:, :4]
    fixed = None if boxes is None else np.median(boxes, axis=0)
    return {"brightness": mean_brightness(frames, boxes), "blur": blur_score(frames, boxes),
            "motion": frame_motion(frames, fixed)}
