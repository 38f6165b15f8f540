"""Facial landmarks and face alignment: dlib's 68-point shape predictor, installed from the package registry.

The model file comes from the ``face-recognition-models`` package (``shape_predictor_68_face_landmarks.dat``,
found on disk by package name; nothing is downloaded at run time) and runs with ``dlib`` (the
``dlib-bin`` wheel). Its points follow the iBUG 300-W scheme: jaw 0-16, brows 17-26, nose 27-35,
eyes 36-47, outer lips 48-59, inner lips 60-67 (:data:`LANDMARK_GROUPS`). The model was trained on
iBUG 300-W, whose licence excludes commercial use (see the README).

Alignment follows the face-aligned crops of DFEW's ``clip_224x224``: a similarity transform puts
the eyes level, ``eye_distance`` of the crop side apart, their midpoint on the vertical centre line
at ``eye_line`` of the crop's height.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

NUM_LANDMARKS = 68
LANDMARK_GROUPS: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(0, 17)),
    "right_brow": tuple(range(17, 22)),  # the subject's right: the left of the image
    "left_brow": tuple(range(22, 27)),
    "nose": tuple(range(27, 36)),
    "right_eye": tuple(range(36, 42)),
    "left_eye": tuple(range(42, 48)),
    "outer_lips": tuple(range(48, 60)),
    "inner_lips": tuple(range(60, 68)),
}
MOUTH_CORNERS = (48, 54)
CHIN = 8
# Upper and lower lid points facing each other: (37, 41), (38, 40) right eye; (43, 47), (44, 46) left eye.
LID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
MODEL_PACKAGE = "face_recognition_models"

_PREDICTORS: dict[str, object] = {}
_PREDICTORS_LOCK = threading.Lock()


class LandmarkModelError(RuntimeError):
    """The landmark model (or dlib) is not installed."""


def model_file(name: str = LANDMARK_MODEL) -> Path:
    """Path of a dlib model file shipped by the ``face-recognition-models`` package.

    The package is located without importing it (its ``__init__`` needs ``pkg_resources``, which
    recent setuptools no longer provides).
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LandmarkModelError(
            f"facial landmarks need the {MODEL_PACKAGE!r} package (pip install face-recognition-models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise LandmarkModelError(f"{path}: model file missing from the {MODEL_PACKAGE!r} package; reinstall it")
    return path


def _predictor(path: Path):
    """One loaded shape predictor per model file and process (loading the 68-point model takes ~0.4 s)."""
    key = str(path)
    with _PREDICTORS_LOCK:
        if key not in _PREDICTORS:
            try:
                import dlib
            except ImportError as err:
                raise LandmarkModelError("facial landmarks need dlib (pip install dlib-bin)") from err
            _PREDICTORS[key] = dlib.shape_predictor(key)
        return _PREDICTORS[key]


def rotation_about(centre: np.ndarray, degrees: float, scale: float = 1.0) -> np.ndarray:
    """2x3 affine matrix rotating points ``degrees`` counter-clockwise (as seen on screen) about ``centre``."""
    return cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(degrees), float(scale))


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points ``(..., 2)`` mapped by a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


@dataclass
class DlibLandmarker:
    """68 facial landmarks inside a face box, optionally for a face tilted by ``upright`` degrees.

    ``refine`` runs the predictor a second time from the box around its first answer: boxes from
    other detectors (Haar's include the forehead), and boxes tracked or interpolated between
    detections, then give the points dlib's own box would. On the synthetic cohort of
    ``tests/stage2/test_kinematics.py`` the PD subjects' loss of smile amplitude correlated 0.92 with the
    expressivity the generator took away with the second fit, 0.48 without it.
    """

    model: str = LANDMARK_MODEL
    refine: bool = True
    _predictor: object | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_predictor"] = None  # reloaded (once per process) on first use
        return state

    def _fit(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        import dlib

        if self._predictor is None:
            self._predictor = _predictor(model_file(self.model))
        rect = dlib.rectangle(*(int(round(v)) for v in box[:4]))
        shape = self._predictor(gray, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def predict(self, rgb: np.ndarray, box: np.ndarray, upright: float = 0.0) -> np.ndarray:
        """Landmarks ``(68, 2)`` in pixels of ``rgb`` for the face in ``box`` (``x0, y0, x1, y1``).

        ``upright`` is the counter-clockwise rotation (degrees) that makes the face upright, as the
        detectors report it for tilted faces; the points are found in a rotated patch and mapped back.
        """
        box = np.asarray(box, dtype=np.float64)
        centre = (box[:2] + box[2:4]) / 2
        side = max(box[2] - box[0], box[3] - box[1])
        # A patch of twice the face around it, turned upright; the predictor sees only that.
        half = side
        to_patch = rotation_about(centre, upright)
        to_patch[:, 2] += half - centre
        patch_size = int(np.ceil(2 * half))
        patch = cv2.warpAffine(np.ascontiguousarray(rgb), to_patch, (patch_size, patch_size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        gray = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY) if patch.ndim == 3 else patch
        inner = np.array([half - (box[2] - box[0]) / 2, half - (box[3] - box[1]) / 2,
                          half + (box[2] - box[0]) / 2, half + (box[3] - box[1]) / 2])
        points = self._fit(gray, inner)
        if self.refine:
            points = self._fit(gray, np.concatenate([points.min(axis=0), points.max(axis=0)]))
        return apply_affine(invert_affine(to_patch), points)


# --------------------------------------------------------------------------- alignment


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the eye in the image's left and of the eye in its right, ``(..., 2)`` each."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    return (landmarks[..., LANDMARK_GROUPS["right_eye"], :].mean(axis=-2),
            landmarks[..., LANDMARK_GROUPS["left_eye"], :].mean(axis=-2))


def eye_geometry(landmarks: np.ndarray) -> np.ndarray:
    """Per frame: eye midpoint x, y, eye distance and the eye line's angle (degrees, clockwise on screen) ``(..., 4)``."""
    left, right = eye_centres(landmarks)
    delta = right - left
    midpoint = (left + right) / 2
    distance = np.hypot(delta[..., 0], delta[..., 1])
    angle = np.degrees(np.arctan2(delta[..., 1], delta[..., 0]))
    return np.concatenate([midpoint, distance[..., None], angle[..., None]], axis=-1)


def alignment_matrix(geometry: np.ndarray, size: int, eye_distance: float, eye_line: float) -> np.ndarray:
    """2x3 matrix from frame pixels to a ``size`` x ``size`` aligned crop, for one frame's :func:`eye_geometry`.

    The eyes end up level, ``eye_distance * size`` apart, their midpoint at ``(size / 2, eye_line * size)``.
    """
    x, y, distance, angle = (float(v) for v in geometry)
    scale = eye_distance * size / max(distance, 1e-6)
    matrix = rotation_about(np.array([x, y]), angle, scale)
    matrix[:, 2] += np.array([size / 2, eye_line * size]) - np.array([x, y])
    return matrix


def aligned_crop(frame: np.ndarray, matrix: np.ndarray, size: int, pad_mode: str = "edge") -> np.ndarray:
    """The ``size`` x ``size`` crop that ``matrix`` (frame -> crop) selects, anti-aliased when it shrinks.

    ``warpAffine`` samples without averaging, so a face shrunk many times (4K to 224 pixels) would
    alias; the frame is first reduced with area averaging to about twice the crop's scale.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    frame = np.ascontiguousarray(frame)
    if scale < 0.5:
        factor = 2 * scale
        small = cv2.resize(frame, (max(1, round(frame.shape[1] * factor)), max(1, round(frame.shape[0] * factor))),
                           interpolation=cv2.INTER_AREA)
        reduce = np.array([[small.shape[1] / frame.shape[1], 0, 0], [0, small.shape[0] / frame.shape[0], 0]])
        matrix = np.concatenate([matrix[:, :2] @ np.linalg.inv(reduce[:, :2]), matrix[:, 2:]], axis=1)
        frame = small
    border = cv2.BORDER_REPLICATE if pad_mode == "edge" else cv2.BORDER_CONSTANT
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)
