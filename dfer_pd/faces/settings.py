"""How a raw video's face is found and cropped: settings only, no image libraries, so a command's parser
and the scoring contract read them without importing OpenCV, dlib or PyAV."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FaceCropSettings:
    """Whether and how a raw video's face is found and cropped before stage 1 scores it.

    Off for videos that are already face crops (DFEW's); on for phone or camera recordings. Part of
    the scoring contract: scores made with other settings differ.

    ``detector`` (``dlib`` HOG or ``haar``) with its score ``detector_threshold`` (dlib's, 0 = its
    default; higher finds fewer, surer faces) and ``fallback_detector`` (tried on frames where the
    first finds nothing; None = no fallback). ``align``: crops aligned on the landmarks' eyes, level
    and ``eye_distance`` of the crop side apart, their midpoint at ``eye_line`` of its height;
    otherwise a square of ``margin`` face-box sides. The face path takes the object whole
    (:func:`~dfer_pd.faces.tracking.track_face`, :func:`~dfer_pd.faces.tracking.read_face_clip`).

    Args:
        crop_faces: find, track and crop the face before scoring (true for phone or camera videos).
        detector: face detector: dlib (HOG) or haar.
        detector_threshold: dlib's detection score threshold (0 = its default; higher finds fewer, surer faces).
        fallback_detector: detector tried on frames where the first finds nothing (none = no fallback).
        align: align crops on the landmarks' eyes (level, a fixed eye distance), as DFEW's faces are.
        eye_distance: eye distance as a share of the crop side, when aligning.
        eye_line: height of the eyes' midpoint as a share of the crop side, when aligning.
        margin: crop side over face-box side when not aligning; 1.25 frames the whole head.
        min_face_fraction: fewest share of examined frames that must show the face, else the video is refused.
        detect_every: run the detector on every k-th distinct sampled frame (and the last); 1 = all.
        smooth_window: moving-median length over the face boxes of distinct frames (1 = no smoothing).
    """

    crop_faces: bool = False
    detector: str = "dlib"
    detector_threshold: float = 0.0
    fallback_detector: str | None = None
    align: bool = True
    eye_distance: float = 0.3
    eye_line: float = 0.4
    margin: float = 1.25
    min_face_fraction: float = 0.5
    detect_every: int = 1
    smooth_window: int = 3

    def __post_init__(self) -> None:
        if self.margin <= 0:
            raise ValueError(f"face margin must be positive, got {self.margin}")
        if not 0 < self.min_face_fraction <= 1:
            raise ValueError(f"min_face_fraction must be in (0, 1], got {self.min_face_fraction}")
        if self.detect_every < 1 or self.smooth_window < 1:
            raise ValueError("detect_every and smooth_window must be at least 1")
        if not 0 < self.eye_distance < 1 or not 0 < self.eye_line < 1:
            raise ValueError(f"eye_distance and eye_line are shares of the crop side in (0, 1), "
                             f"got {self.eye_distance} and {self.eye_line}")
