"""Landmark kinematics: hypomimia measured directly from the face's movement, beside stage 1's intensities.

Following the video-based PD literature (e.g. Bandini et al. 2017, facial expressions in PD), each
expression video's 68 facial landmarks (:mod:`dfer_pd.faces.landmarks`) are turned into four
movement signals, in units of the eye distance and in a frame that turns with the head (eye line
level, origin between the eyes), so head motion and distance to the camera cancel. The frame is set by
the four eye corners only (points 36, 39, 42, 45), which the lids do not move, so opening the eyes
does not shift the brow or jaw signals; its unit is one per video (the median corner-to-corner eye
distance), followed frame by frame only as the face nears the camera (by the rigid nasal bridge), so a
head turning away does not inflate every distance:

- ``mouth_corners``: the positions of the two mouth corners (points 48, 54);
- ``brows``: the mean height of the ten brow points above the eye line;
- ``eyelids``: the mean opening between facing upper and lower lid points;
- ``jaw``: the height of the chin (point 8) below the eye line.

Each signal is compared with the same subject's *neutral* video (its median), and per video gives
three kinematic features (:data:`KINEMATIC_FEATURES`, 4 x 3 = 12): the ``amplitude`` of the movement
(95th percentile of the displacement), its ``peak_speed`` (95th percentile of the speed, in eye distances
per second: the maximum of a differentiated landmark track is its noisiest frame) and
``time_to_peak`` (seconds from 10% to 90% of the amplitude). Hypomimia lowers amplitude and speed and
lengthens the time to peak. Unlike stage 1, none of this needs licensed training data.

:func:`video_landmarks` reads the landmarks of a video on a time grid (:class:`KinematicsSettings`),
:class:`LandmarkCache` keeps them by video content and settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.common.files import NpzStore, content_key, file_digest
from dfer_pd.faces.settings import FaceCropSettings
from dfer_pd.stage2.settings import KinematicsSettings
from dfer_pd.faces.landmarks import CHIN, LANDMARK_GROUPS, LID_PAIRS, MOUTH_CORNERS

KINEMATIC_MEASURES: tuple[str, ...] = ("mouth_corners", "brows", "eyelids", "jaw")
KINEMATIC_STATS: tuple[str, ...] = ("amplitude", "peak_speed", "time_to_peak")
KINEMATIC_FEATURES: tuple[str, ...] = tuple(f"{m}_{s}" for m in KINEMATIC_MEASURES for s in KINEMATIC_STATS)
"""The 12 features of one video, in the order :func:`video_kinematics` returns them."""
NUM_KINEMATIC_FEATURES = len(KINEMATIC_FEATURES)
AMPLITUDE_PERCENTILE = 95.0
SPEED_PERCENTILE = 95.0
_BROWS = LANDMARK_GROUPS["right_brow"] + LANDMARK_GROUPS["left_brow"]
EYE_CORNERS: tuple[tuple[int, int], tuple[int, int]] = ((36, 39), (42, 45))
"""Outer and inner corner of the image's left eye (the subject's right), then inner and outer of the other:
the points that set the head frame. The lids (37, 38, 40, 41, 43, 44, 46, 47) take no part in it."""
NASAL_BRIDGE: tuple[int, int] = (27, 30)
"""Top of the nose between the eyes and the nose tip: how near the face is, whichever way it turns."""


# --------------------------------------------------------------------------- pure maths


def corner_geometry(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame of landmarks ``(T, 68, 2)``: the eye-corner midpoint ``(T, 2)``, the eye line's angle
    ``(T,)`` (radians) and the distance between the two eyes' corner centres ``(T,)``."""
    points = np.asarray(points, dtype=np.float64)
    first = points[:, list(EYE_CORNERS[0]), :].mean(axis=1)
    second = points[:, list(EYE_CORNERS[1]), :].mean(axis=1)
    delta = second - first
    return (first + second) / 2, np.arctan2(delta[:, 1], delta[:, 0]), np.hypot(delta[:, 0], delta[:, 1])


def video_scale(points: np.ndarray) -> np.ndarray:
    """Pixels per unit in each frame of landmarks ``(T, 68, 2)``: the video's median eye-corner distance, one
    unit for the whole video, followed frame by frame only as far as the face nears or leaves the camera,
    which the nasal bridge (points 27 to 30, rigid, untouched by expressions) measures across the eye line.
    A head turning away shortens the eye distance on screen but not the bridge, so it does not rescale the frame."""
    points = np.asarray(points, dtype=np.float64)
    _, angle, distance = corner_geometry(points)
    nose = points[:, NASAL_BRIDGE[1]] - points[:, NASAL_BRIDGE[0]]
    bridge = np.abs(-np.sin(angle) * nose[:, 0] + np.cos(angle) * nose[:, 1])  # across the eye line
    return np.median(distance) * bridge / max(float(np.median(bridge)), 1e-9)


def head_frame(points: np.ndarray, scale: float | np.ndarray | None = None) -> np.ndarray:
    """Landmarks ``(T, 68, 2)`` in a frame that turns with the head: origin between the eyes, eye line
    along +x (the image's left eye at -0.5), y pointing down the face, all from the four eye corners.
    The unit is ``scale`` pixels (one number, or one per frame), by default :func:`video_scale`."""
    points = np.asarray(points, dtype=np.float64)
    origin, angle, _ = corner_geometry(points)
    scale = video_scale(points) if scale is None else np.broadcast_to(np.asarray(scale, dtype=np.float64), angle.shape)
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    shifted = points - origin[:, None, :]
    x = cos * shifted[..., 0] + sin * shifted[..., 1]
    y = -sin * shifted[..., 0] + cos * shifted[..., 1]
    return np.stack([x, y], axis=-1) / np.maximum(scale, 1e-6)[:, None, None]


def facial_signals(points: np.ndarray) -> dict[str, np.ndarray]:
    """The four movement signals of :data:`KINEMATIC_MEASURES` per frame, from landmarks ``(T, 68, 2)``.

    ``mouth_corners`` is ``(T, 2, 2)`` (two corners, x and y); the others are ``(T,)``.
    """
    normal = head_frame(points)
    lids = np.stack([normal[:, lower, 1] - normal[:, upper, 1] for upper, lower in LID_PAIRS], axis=1)
    return {
        "mouth_corners": normal[:, list(MOUTH_CORNERS), :],
        "brows": -normal[:, list(_BROWS), 1].mean(axis=1),
        "eyelids": lids.mean(axis=1),
        "jaw": normal[:, CHIN, 1],
    }


def neutral_reference(signals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each signal's median over a video (the neutral video: the subject's face at rest)."""
    return {name: np.median(values, axis=0) for name, values in signals.items()}


def _smooth(values: np.ndarray) -> np.ndarray:
    """Three-frame moving average along time (edges repeated): landmark jitter is frame to frame."""
    if len(values) < 3:
        return values
    padded = np.concatenate([values[:1], values, values[-1:]])
    return (padded[:-2] + padded[1:-1] + padded[2:]) / 3


def displacement(signal: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Distance of each frame's signal from the reference: Euclidean per point, averaged over points."""
    difference = np.asarray(signal, dtype=np.float64) - reference
    if difference.ndim == 1:
        return np.abs(difference)
    return np.linalg.norm(difference.reshape(len(difference), -1, difference.shape[-1]), axis=-1).mean(axis=1)


def movement_features(times: np.ndarray, signal: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``amplitude`` (95th percentile of the displacement), ``peak_speed`` (95th percentile of the speed) and
    ``time_to_peak`` (10% to 90% of the amplitude) of one signal against its neutral reference."""
    times = np.asarray(times, dtype=np.float64)
    smooth = _smooth(np.asarray(signal, dtype=np.float64))
    moved = displacement(smooth, reference)
    amplitude = float(np.percentile(moved, AMPLITUDE_PERCENTILE))
    if len(times) < 2:
        return np.array([amplitude, 0.0, 0.0])
    steps = np.diff(times)
    velocity = np.diff(smooth, axis=0) / np.maximum(steps, 1e-6).reshape(-1, *([1] * (smooth.ndim - 1)))
    speed = np.abs(velocity) if velocity.ndim == 1 else np.linalg.norm(
        velocity.reshape(len(velocity), -1, velocity.shape[-1]), axis=-1).mean(axis=1)
    peak_speed = float(np.percentile(speed, SPEED_PERCENTILE))
    if amplitude <= 0:
        return np.array([0.0, peak_speed, 0.0])
    start = times[np.argmax(moved >= 0.1 * amplitude)]
    peak = times[np.argmax(moved >= 0.9 * amplitude)]
    return np.array([amplitude, peak_speed, float(max(peak - start, 0.0))])


def video_kinematics(times: np.ndarray, points: np.ndarray, reference: dict[str, np.ndarray]) -> np.ndarray:
    """The 12 :data:`KINEMATIC_FEATURES` of one video (landmarks ``(T, 68, 2)`` at ``times`` seconds)."""
    signals = facial_signals(points)
    return np.concatenate([movement_features(times, signals[m], reference[m]) for m in KINEMATIC_MEASURES])


def subject_kinematics(videos: dict[str, tuple[np.ndarray, np.ndarray]], expressions=EXPRESSIONS) -> np.ndarray:
    """``(len(expressions), 12)`` features of one subject from ``{expression: (times, landmarks)}``.

    Every video, the neutral one included, is measured against the neutral video's median face.
    """
    if "neutral" not in videos:
        raise ValueError("kinematics are measured against the neutral video, and there is none")
    reference = neutral_reference(facial_signals(videos["neutral"][1]))
    return np.stack([video_kinematics(*videos[e], reference) for e in expressions])


# --------------------------------------------------------------------------- videos


@dataclass
class LandmarkTrack:
    """A video's landmarks on a time grid: ``times`` (T,) seconds, ``points`` (T, 68, 2) pixels, where the
    face was ``detected`` (T,), the share of examined frames showing it, and the reader's findings."""

    times: np.ndarray
    points: np.ndarray
    detected: np.ndarray
    face_fraction: float
    decode: dict


def video_landmarks(path: str | Path, settings: KinematicsSettings, face: FaceCropSettings) -> LandmarkTrack:
    """Read ``path`` at ``settings.fps`` (by time; at most ``max_frames``) and find the face's landmarks,
    the face found and tracked as ``face`` says (detecting every ``settings.detect_every``-th frame).

    Raises :class:`~dfer_pd.common.video.VideoReadError` for unreadable videos and
    :class:`~dfer_pd.faces.tracking.NoFaceError` when too few frames show a face.
    """
    from dfer_pd.common.video import count_frames, read_sampled_clip
    from dfer_pd.faces.tracking import follow_face
    from dfer_pd.common.video import video_duration

    duration = video_duration(path)
    count = count_frames(path)
    num = int(np.clip(round(duration * settings.fps), 2, settings.max_frames))
    clip = read_sampled_clip(path, min(num, count) if count >= 2 else 2)
    times = clip.times if clip.times is not None else clip.indices * (duration / max(count, 1))
    follow = follow_face(clip.frames, settings.face_settings(face), clip.indices, landmarks=True, source=path)
    points = follow.landmarks[follow.position_of]
    return LandmarkTrack(np.asarray(times, dtype=np.float64), points, follow.detected[follow.position_of],
                         follow.face_fraction, clip.summary())


def landmark_cache_root(intensity_cache_dir: str | Path) -> Path:
    """Where extraction keeps landmark tracks: beside the intensity cache's contract folders."""
    return Path(intensity_cache_dir) / "landmarks"


class LandmarkCache(NpzStore):
    """Landmark tracks on disk: ``<root>/<settings key>/<video sha256>.npz`` (:class:`~dfer_pd.common.files.NpzStore`)."""

    VERSION = 1

    def __init__(self, root: str | Path, settings: KinematicsSettings, face: FaceCropSettings) -> None:
        super().__init__(root, content_key({"settings": settings.key(face), "version": self.VERSION}))
        self.settings, self.face = settings, face

    def get(self, video: str | Path, digest: str | None = None) -> LandmarkTrack:
        """The video's landmarks, from disk when present, else read (and stored)."""
        import json

        digest = digest or file_digest(video)
        if self.has(digest):
            stored = self.read(digest)
            return LandmarkTrack(stored["times"], stored["points"], stored["detected"],
                                 float(stored["face_fraction"]), json.loads(str(stored["decode"])))
        track = video_landmarks(video, self.settings, self.face)
        self.write(digest, times=track.times, points=track.points, detected=track.detected,
                   face_fraction=np.asarray(track.face_fraction), decode=np.asarray(json.dumps(track.decode)))
        return track


def read_landmarks_ahead(manifest: str | Path, root: str | Path, settings: KinematicsSettings,
                         face: FaceCropSettings) -> int:
    """Read every video of a cohort's manifest into the landmark cache under ``root``; returns how many were read.

    Landmarks do not depend on stage 1, so this can run while stage 1 trains (the demo does, beside it);
    extraction then finds them in the cache. A video that cannot be read is left for extraction's
    checks, which report every problem with its manifest line.
    """
    from dfer_pd.common.video import VideoReadError
    from dfer_pd.stage2.cohort import read_manifest

    cache = LandmarkCache(root, settings, face)
    read = 0
    for subject in read_manifest(manifest).subjects:
        for path in subject.videos.values():
            try:
                cache.get(path)
                read += 1
            except VideoReadError:
                pass
    return read
