"""Find the person's face in a raw (phone) video and cut an aligned, face-centred clip out of it.

DFEW's frames are already face-aligned crops; a patient's phone video is not. The path here is:
sample the ``M`` frames the model will see (only those are decoded), detect faces on them, link
the boxes into tracks by overlap and nearness, keep the main face (the track with the largest sum
of box sides, so large *and* persistent beats a brief false positive or a smaller second person), fill frames
without a detection by interpolating over frame indices, smooth the box with a short moving
median, find the 68 facial landmarks inside it (:mod:`dfer_pd.faces.landmarks`), and cut a crop
aligned on the eyes (level, a fixed distance apart), as DFEW's ``clip_224x224`` faces were cut. With
``align=False`` the crop is a square of ``margin`` times the face box side instead.

Detectors are pluggable (:class:`FaceDetector`). The default is dlib's HOG detector (``dlib-bin``),
which finds frontal and three-quarter faces; a frame where it finds none is searched again at
twice the resolution and turned by +-30 degrees (tilted heads), and then by the light fallback,
OpenCV's frontal Haar cascade (its weights ship inside ``opencv-python-headless``). Nothing is
downloaded at run time.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dfer_pd.common.sampling import SamplingMode
from dfer_pd.common.video import VideoReadError, read_sampled_clip
from dfer_pd.faces.measures import face_measures
from dfer_pd.faces.settings import FaceCropSettings

if TYPE_CHECKING:
    from dfer_pd.faces.cache import FaceCropCache
from dfer_pd.faces.landmarks import DlibLandmarker, aligned_crop, alignment_matrix, apply_affine, eye_geometry

# A face continues a track when it overlaps the track's last box this much, or when it has a
# similar size and lies within two face sides of it: 16 frames sampled from a 10 s phone video
# are over half a second apart, time enough for a head to move by a face width. Closer boxes win.
LINK_MIN_IOU = 0.2
LINK_MAX_CENTRE_SHIFT = 2.0  # in face sides
LINK_MAX_SIZE_RATIO = 1.5
# A face counts towards ``num_faces_max`` when seen in this share of examined frames (and at least
# two): a passer-by or a one-off false positive is not a second person in the recording.
PERSISTENT_FACE_FRACTION = 0.25


class NoFaceError(VideoReadError):
    """Too few sampled frames of a video show a face; the message names the file and the count."""


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces in one RGB ``uint8`` image ``(H, W, 3)``."""

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """Face boxes ``(K, 4)`` as float ``x0, y0, x1, y1`` in pixels of ``rgb`` (K may be 0).

        A fifth column, when present, is the counter-clockwise rotation in degrees that turns the
        face upright (a tilted head found in a turned copy of the image).
        """
        ...


def _downscale_gray(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Grayscale image no larger than ``max_side`` and the factor that maps its pixels back."""
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    scale = max(gray.shape) / max_side
    if scale <= 1.0:
        return gray, 1.0
    size = (max(1, round(gray.shape[1] / scale)), max(1, round(gray.shape[0] / scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), scale


@dataclass
class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade (``haarcascade_frontalface_default.xml``, OpenCV 4.x).

    Frames are converted to gray and shrunk to at most ``max_side`` pixels first: a 4K phone frame
    costs the same as a small one, and a face filling a selfie video is still far above
    ``min_size_fraction`` of the shorter side, the smallest face searched for. ``equalize``
    (histogram equalisation) can help in dim footage but slows the search on busy backgrounds
    and made it miss small faces there, so it is off by default.
    """

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size_fraction: float = 0.08
    max_side: int = 640
    equalize: bool = False
    _cascade: cv2.CascadeClassifier | None = field(default=None, init=False, repr=False, compare=False)

    def _classifier(self) -> cv2.CascadeClassifier:
        if self._cascade is None:
            cascade_file = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
            cascade = cv2.CascadeClassifier(str(cascade_file))
            if cascade.empty():
                raise RuntimeError(f"{cascade_file}: OpenCV could not load the Haar cascade")
            self._cascade = cascade
        return self._cascade

    def __getstate__(self) -> dict:
        # The loaded cascade cannot be pickled (DataLoader workers); it reloads on first use.
        state = self.__dict__.copy()
        state["_cascade"] = None
        return state

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        gray, scale = _downscale_gray(rgb, self.max_side)
        min_side = max(12, round(self.min_size_fraction * min(gray.shape)))
        found = self._classifier().detectMultiScale(
            cv2.equalizeHist(gray) if self.equalize else gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
        )
        boxes = np.asarray(found, dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x0, y0, x1, y1
        return boxes * scale


@dataclass
class DlibHogFaceDetector:
    """dlib's HOG + linear SVM face detector (``dlib-bin``): frontal and three-quarter faces, five sub-detectors.

    Frames are shrunk to at most ``max_side`` pixels first. When nothing scores above
    ``threshold`` there, the frame is searched again doubled ``retry_upsample`` times (faces down to
    ~40 pixels), then turned by each of ``roll_search`` degrees (heads tilted beyond the ~15 degrees
    the upright search tolerates). Boxes come with a fifth column: the rotation that makes the face upright.
    """

    threshold: float = 0.0
    upsample: int = 0
    retry_upsample: int = 1
    roll_search: tuple[float, ...] = (30.0, -30.0)
    max_side: int = 640
    _detector: object | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_detector"] = None
        return state

    def _search(self, gray: np.ndarray, upsample: int) -> np.ndarray:
        if self._detector is None:
            self._detector = _dlib_frontal_detector()
        found, _, _ = self._detector.run(gray, upsample, self.threshold)
        return np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in found], dtype=np.float64).reshape(-1, 4)

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        gray, scale = _downscale_gray(rgb, self.max_side)
        boxes = self._search(gray, self.upsample)
        if len(boxes) == 0 and self.retry_upsample > self.upsample:
            boxes = self._search(gray, self.retry_upsample)
        if len(boxes):
            return np.concatenate([boxes * scale, np.zeros((len(boxes), 1))], axis=1)
        height, width = gray.shape
        centre = np.array([width / 2, height / 2])
        for angle in self.roll_search:
            # Turn the picture on a canvas large enough to keep all of it, search, map the centres back.
            matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), 1.0)
            cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
            size = (int(np.ceil(width * cos + height * sin)), int(np.ceil(width * sin + height * cos)))
            matrix[:, 2] += np.array(size) / 2 - centre
            turned = cv2.warpAffine(gray, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            found = self._search(turned, self.upsample)
            if len(found):
                back = cv2.invertAffineTransform(matrix)
                centres = apply_affine(back, (found[:, :2] + found[:, 2:]) / 2)
                half = (found[:, 2:] - found[:, :2]) / 2
                boxes = np.concatenate([centres - half, centres + half], axis=1) * scale
                return np.concatenate([boxes, np.full((len(boxes), 1), float(angle))], axis=1)
        return np.zeros((0, 5))


_THREAD_LOCAL = threading.local()


def _dlib_frontal_detector():
    """dlib's frontal face detector, built once per thread (building one takes ~0.5 s)."""
    detector = getattr(_THREAD_LOCAL, "dlib_frontal", None)
    if detector is None:
        import dlib

        detector = _THREAD_LOCAL.dlib_frontal = dlib.get_frontal_face_detector()
    return detector


@dataclass
class FallbackDetector:
    """``primary``'s faces, or ``fallback``'s on frames where ``primary`` finds none."""

    primary: FaceDetector
    fallback: FaceDetector

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        boxes = self.primary.detect(rgb)
        return boxes if len(boxes) else self.fallback.detect(rgb)


def _dlib_available() -> bool:
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    return True


DETECTORS: dict[str, Callable[..., FaceDetector]] = {"haar": HaarFaceDetector}
if _dlib_available():
    DETECTORS["dlib"] = DlibHogFaceDetector


def build_detector(
    detector: str | FaceDetector = "dlib", fallback: str | FaceDetector | None = None, threshold: float | None = None
) -> FaceDetector:
    """A detector from its registry name (``DETECTORS``), or the given detector unchanged, with an optional fallback.

    ``threshold`` is dlib's detection score threshold (ignored by Haar, whose sureness is ``min_neighbors``).
    """
    if not isinstance(detector, str):
        if not isinstance(detector, FaceDetector):
            raise TypeError(f"a face detector needs a detect(rgb) method, got {type(detector).__name__}")
        built = detector
    elif detector not in DETECTORS:
        hint = " (install dlib-bin for 'dlib')" if detector == "dlib" else ""
        raise ValueError(f"unknown face detector {detector!r}; available: {sorted(DETECTORS)}{hint}")
    elif detector == "dlib" and threshold is not None:
        built = DETECTORS[detector](threshold=threshold)
    else:
        built = DETECTORS[detector]()
    if fallback is None or fallback == detector:
        return built
    return FallbackDetector(built, build_detector(fallback))


def detector_for(settings: FaceCropSettings) -> FaceDetector:
    """The detector ``settings`` describe, with its threshold and fallback."""
    return build_detector(settings.detector, fallback=settings.fallback_detector, threshold=settings.detector_threshold)


def detect_boxes(detector: FaceDetector, rgb: np.ndarray) -> np.ndarray:
    """``detector``'s faces in one image as ``(K, 5)``: box and upright rotation (0 when the detector gives none)."""
    boxes = np.asarray(detector.detect(rgb), dtype=np.float64)
    boxes = boxes.reshape(-1, boxes.shape[-1] if boxes.size else 4)
    if boxes.shape[1] == 4:
        boxes = np.concatenate([boxes, np.zeros((len(boxes), 1))], axis=1)
    return boxes


# --------------------------------------------------------------------------- tracking


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``x0, y0, x1, y1`` box with each of ``boxes`` ``(K, 4)``."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _same_face(last: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """How well each box continues a track that ended at ``last`` (0 = not the same face)."""
    iou = box_iou(last, boxes)
    side = np.sqrt((last[2] - last[0]) * (last[3] - last[1]))
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    shift = np.hypot(
        (boxes[:, 0] + boxes[:, 2] - last[0] - last[2]) / 2, (boxes[:, 1] + boxes[:, 3] - last[1] - last[3]) / 2
    ) / max(side, 1e-9)
    ratio = np.maximum(sides, side) / np.maximum(np.minimum(sides, side), 1e-9)
    closeness = np.clip(1 - shift / LINK_MAX_CENTRE_SHIFT, 0, None) * (ratio <= LINK_MAX_SIZE_RATIO)
    return np.where((iou >= LINK_MIN_IOU) | (closeness > 0), iou + closeness, 0.0)


def link_tracks(detections: Sequence[np.ndarray]) -> list[dict[int, np.ndarray]]:
    """Group per-frame boxes into tracks ``{frame position: box}``, greedily by overlap.

    Each frame's boxes continue the tracks they match best (one box per track and frame); the
    rest start new tracks. A track that misses a frame can still be continued later.
    """
    tracks: list[dict[int, np.ndarray]] = []
    for position, boxes in enumerate(detections):
        if len(boxes) == 0:
            continue
        scores = np.stack([_same_face(track[max(track)], boxes) for track in tracks]) if tracks else None
        unused = set(range(len(boxes)))
        if scores is not None:
            for flat in np.argsort(-scores, axis=None):
                t, b = np.unravel_index(flat, scores.shape)
                if scores[t, b] <= 0:
                    break
                if b in unused and position not in tracks[t]:
                    tracks[t][position] = boxes[b]
                    unused.discard(b)
        tracks.extend({position: boxes[b]} for b in sorted(unused))
    return tracks


def _track_score(track: dict[int, np.ndarray]) -> float:
    """Sum of box sides (square roots of areas): large and often seen wins, and a face found in
    twice as many frames outweighs one twice as wide, so a brief large false positive loses."""
    return float(sum(np.sqrt((b[2] - b[0]) * (b[3] - b[1])) for b in track.values()))


def moving_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median over ``window`` neighbours along axis 0, edges repeated; keeps steady motion, drops one-frame jumps."""
    if window <= 1 or len(values) < 2:
        return values
    half = window // 2
    padded = np.pad(values, [(half, half)] + [(0, 0)] * (values.ndim - 1), mode="edge")
    return np.median(sliding_window_view(padded, window, axis=0), axis=-1)


def square_boxes(face_boxes: np.ndarray, margin: float) -> np.ndarray:
    """Square boxes ``(T, 4)`` centred on each face box, of side ``margin`` times its larger side."""
    centre = (face_boxes[:, :2] + face_boxes[:, 2:]) / 2
    half = margin * np.max(face_boxes[:, 2:] - face_boxes[:, :2], axis=1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], axis=1)


PadMode = Literal["edge", "constant"]


def crop_square(frame: np.ndarray, box: np.ndarray, size: int, pad_mode: PadMode = "edge") -> np.ndarray:
    """Cut ``box`` out of ``frame`` (padding where it leaves the picture) and resize to ``size x size``."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = np.round(box).astype(int)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    # Keep at least one pixel of the picture inside the box so edge padding has something to repeat.
    shift_x = min(0, width - 1 - x0) + max(0, 1 - x1)
    shift_y = min(0, height - 1 - y0) + max(0, 1 - y1)
    x0, x1, y0, y1 = x0 + shift_x, x1 + shift_x, y0 + shift_y, y1 + shift_y
    inside = frame[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    pad = ((max(-y0, 0), max(y1 - height, 0)), (max(-x0, 0), max(x1 - width, 0)), (0, 0))
    crop = np.pad(inside, pad, mode=pad_mode)
    shrink = crop.shape[0] > size
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


@dataclass
class FaceTrackReport:
    """Where the main face was, per returned frame, and how often it was found.

    ``frame_indices`` are the video frames the crops come from; ``examined`` marks frames the
    detector ran on, ``detected`` those where it found the main face. ``face_boxes`` are the
    smoothed (and, where not detected, interpolated) face boxes and ``crop_boxes`` the regions cut
    out (the bounding square of an aligned crop), both ``x0, y0, x1, y1`` in frame pixels;
    ``upright`` the rotation (degrees, counter-clockwise) that makes the face upright. ``landmarks``
    ``(T, 68, 2)`` are the facial landmarks in frame pixels (None when not computed).
    ``face_fraction`` is the share of examined frames with the main face; ``num_faces_max`` the most
    faces seen in one frame, counting only faces found in at least two frames and a quarter of
    them (a one-frame false positive is not a second person; in a still photo every face counts).
    ``decode`` is the video reader's finding (:meth:`dfer_pd.common.video.ClipRead.summary`);
    ``measures`` the brightness, blur and motion of the face region in the source frames
    (:func:`dfer_pd.faces.measures.face_measures`).
    """

    frame_indices: np.ndarray
    face_boxes: np.ndarray
    crop_boxes: np.ndarray
    examined: np.ndarray
    detected: np.ndarray
    face_fraction: float
    num_faces_max: int
    frame_size: tuple[int, int]
    upright: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    aligned: bool = False
    decode: dict | None = None
    measures: dict | None = None

    @property
    def boxes(self) -> np.ndarray:
        """The smoothed face boxes (alias of ``face_boxes``)."""
        return self.face_boxes

    def summary(self) -> dict:
        """The scalar findings, for JSON reports."""
        return {
            "face_fraction": self.face_fraction,
            "frames_examined": int(self.examined.sum()),
            "frames_with_face": int(self.detected.sum()),
            "num_faces_max": self.num_faces_max,
            "frame_size": list(self.frame_size),
            "aligned": self.aligned,
        }


def _examined_positions(num_frames: int, detect_every: int) -> np.ndarray:
    positions = np.arange(0, num_frames, max(detect_every, 1))
    return np.union1d(positions, [num_frames - 1])  # always look at the last frame too


def _interpolate_columns(times: np.ndarray, known_times: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Rows ``known`` ``(K, C)`` given at ``known_times``, at ``times`` (linear, held constant past either end)."""
    return np.stack([np.interp(times, known_times, known[:, c]) for c in range(known.shape[1])], axis=1)


def persistent_face_count(tracks: list[dict[int, np.ndarray]], num_examined: int, positions: int) -> int:
    """Most faces in one frame among tracks seen in at least two examined frames and a quarter of them.

    With a single distinct frame (a photo) one sighting is enough: every face in it counts.
    """
    needed = max(min(2, num_examined), int(np.ceil(PERSISTENT_FACE_FRACTION * num_examined)))
    persistent = [t for t in tracks if len(t) >= needed]
    if not persistent:
        return 1 if tracks else 0
    return max(sum(p in t for t in persistent) for p in range(positions))


@dataclass
class FaceFollow:
    """The main face through a clip's distinct frames (see :func:`follow_face`)."""

    times: np.ndarray  # distinct frame numbers, sorted
    first_of: np.ndarray  # position in the given frames of each distinct frame
    position_of: np.ndarray  # distinct position of each given frame
    face_boxes: np.ndarray  # (P, 4) smoothed
    upright: np.ndarray  # (P,)
    examined: np.ndarray  # (P,) bool
    detected: np.ndarray  # (P,) bool
    face_fraction: float
    num_faces_max: int
    landmarks: np.ndarray | None  # (P, 68, 2)


def follow_face(
    frames: np.ndarray,
    settings: FaceCropSettings = FaceCropSettings(),
    frame_indices: np.ndarray | None = None,
    detector: FaceDetector | None = None,
    landmarks: bool = True,
    landmarker: DlibLandmarker | None = None,
    source: str | Path = "clip",
) -> FaceFollow:
    """Detect, link, interpolate and smooth the main face over ``frames`` ``(T, H, W, 3)``; optionally its landmarks.

    ``settings`` give the detector (unless ``detector`` is given), ``detect_every``, ``smooth_window`` and
    ``min_face_fraction``. Repeated frame numbers (short clips) are looked at once. Raises
    :class:`NoFaceError` when the main face is in fewer than ``min_face_fraction`` of the examined frames.
    """
    min_face_fraction, smooth_window = settings.min_face_fraction, settings.smooth_window
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"{source}: frames must be (T, H, W, 3), got shape {frames.shape}")
    indices = np.arange(len(frames)) if frame_indices is None else np.asarray(frame_indices)
    times, first_of, position_of = np.unique(indices, return_index=True, return_inverse=True)
    detector = build_detector(detector) if detector is not None else detector_for(settings)

    examined = _examined_positions(len(times), settings.detect_every)
    detections = [
        detect_boxes(detector, frames[first_of[p]]) if p in examined else np.zeros((0, 5)) for p in range(len(times))
    ]
    tracks = link_tracks(detections)
    main = max(tracks, key=_track_score) if tracks else {}
    found = np.array(sorted(main), dtype=int)
    fraction = len(found) / len(examined)
    if fraction < min_face_fraction or len(found) == 0:
        raise NoFaceError(
            f"{source}: face found in {len(found)} of {len(examined)} sampled frames "
            f"(need at least {min_face_fraction:.0%})"
        )
    num_faces_max = persistent_face_count(tracks, len(examined), len(times))
    # Interpolate centre, side and tilt (not corners) so the box keeps its shape between detections.
    known = np.stack([main[p] for p in found])
    geometry = np.concatenate([(known[:, :2] + known[:, 2:4]) / 2, known[:, 2:4] - known[:, :2], known[:, 4:5]], axis=1)
    geometry = moving_median(_interpolate_columns(times, times[found], geometry), smooth_window)
    face_boxes = np.concatenate([geometry[:, :2] - geometry[:, 2:4] / 2, geometry[:, :2] + geometry[:, 2:4] / 2], axis=1)
    points = None
    if landmarks:
        landmarker = landmarker or DlibLandmarker()
        points = np.stack([landmarker.predict(frames[first_of[p]], face_boxes[p], geometry[p, 4]) for p in range(len(times))])
    return FaceFollow(times, first_of, position_of, face_boxes, geometry[:, 4], np.isin(np.arange(len(times)), examined),
                      np.isin(np.arange(len(times)), found), float(fraction), int(num_faces_max), points)


def track_face(
    frames: np.ndarray,
    settings: FaceCropSettings = FaceCropSettings(),
    frame_indices: np.ndarray | None = None,
    size: int = 224,
    pad_mode: PadMode = "edge",
    source: str | Path = "clip",
    detector: FaceDetector | None = None,
    landmarker: DlibLandmarker | None = None,
) -> tuple[np.ndarray, FaceTrackReport]:
    """Follow the main face through sampled ``frames`` ``(T, H, W, 3)`` and crop it as ``settings`` say: ``(T, size, size, 3)``.

    Args:
        frames: RGB uint8 frames, in time order.
        settings: the face path (detector, tracking, alignment or margin); see :class:`FaceCropSettings`.
        frame_indices: their frame numbers in the video (for interpolation over time); 0..T-1 if None.
            Repeated numbers (short clips) are detected once.
        size: side of the returned crops (the model's input size).
        pad_mode: how crops are padded where they leave the picture (``edge`` or ``constant`` zeros).
        source: the file name for error messages.
        detector: a :class:`FaceDetector` to use instead of the one ``settings`` name.
        landmarker: the landmark model (dlib's 68 points by default).

    Raises:
        NoFaceError: when the main face is in fewer than ``settings.min_face_fraction`` of examined frames.
    """
    if size < 1:
        raise ValueError(f"{source}: size must be >= 1, got {size}")
    align = settings.align
    follow = follow_face(frames, settings, frame_indices, detector, landmarks=align, landmarker=landmarker,
                         source=source)
    frames = np.asarray(frames)
    position_of = follow.position_of
    if align:
        geometry = moving_median(eye_geometry(follow.landmarks), settings.smooth_window)
        matrices = [alignment_matrix(g, size, settings.eye_distance, settings.eye_line) for g in geometry]
        crops = np.stack([aligned_crop(frame, matrices[p], size, pad_mode) for frame, p in zip(frames, position_of)])
        corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float64)
        outlines = np.stack([apply_affine(cv2.invertAffineTransform(m), corners) for m in matrices])
        crop_boxes = np.concatenate([outlines.min(axis=1), outlines.max(axis=1)], axis=1)
    else:
        crop_boxes = square_boxes(follow.face_boxes, settings.margin)
        crops = np.stack([crop_square(frame, crop_boxes[p], size, pad_mode) for frame, p in zip(frames, position_of)])
    report = FaceTrackReport(
        frame_indices=np.arange(len(frames)) if frame_indices is None else np.asarray(frame_indices),
        face_boxes=follow.face_boxes[position_of],
        crop_boxes=crop_boxes[position_of],
        examined=follow.examined[position_of],
        detected=follow.detected[position_of],
        face_fraction=follow.face_fraction,
        num_faces_max=follow.num_faces_max,
        frame_size=(int(frames.shape[1]), int(frames.shape[2])),
        upright=follow.upright[position_of],
        landmarks=None if follow.landmarks is None else follow.landmarks[position_of],
        aligned=bool(align),
        measures=face_measures(frames[follow.first_of], follow.face_boxes),
    )
    return crops, report


# --------------------------------------------------------------------------- videos


def read_face_clip(
    path: str | Path,
    num_frames: int,
    settings: FaceCropSettings = FaceCropSettings(),
    size: int = 224,
    mode: SamplingMode = "eval",
    rng: np.random.Generator | None = None,
    threads: bool = False,
    cache: FaceCropCache | None = None,
    detector: FaceDetector | None = None,
    pad_mode: PadMode = "edge",
) -> tuple[np.ndarray, FaceTrackReport]:
    """Sample ``num_frames`` frames of a raw video (decoding only those), find the face, crop it.

    Returns ``(num_frames, size, size, 3)`` uint8 crops and the :class:`FaceTrackReport` (whose
    ``decode`` says whether the video was truncated, and ``measures`` how bright, sharp and moving
    the face is in the source frames). ``cache`` (eval sampling only) stores the crops by video content and settings. Raises :class:`VideoReadError`
    for unreadable videos and :class:`NoFaceError` when too few frames show a face.
    ``settings``, ``size``, ``pad_mode`` and ``detector`` go to :func:`track_face`.
    """

    def compute() -> tuple[np.ndarray, FaceTrackReport]:
        clip = read_sampled_clip(path, num_frames=num_frames, mode=mode, rng=rng, threads=threads)
        try:
            crops, report = track_face(clip.frames, settings, clip.indices, size=size, pad_mode=pad_mode,
                                       source=path, detector=detector)
        except NoFaceError as error:
            error.decode = clip.summary()  # a video can be faceless and truncated: both are reported
            raise
        report.decode = clip.summary()
        return crops, report

    if cache is None:
        return compute()
    if mode != "eval":
        raise ValueError(f"{path}: face crops are cached for eval sampling only, got mode={mode!r}")
    key = {**asdict(settings), "num_frames": num_frames, "size": size, "pad_mode": pad_mode,
           "detector": repr(detector if detector is not None else detector_for(settings))}
    key.pop("crop_faces")
    return cache.get_or_compute(path, key, compute)
