"""Benchmark (not a test): face detection rates and time per frame on real faces that installed packages ship.

    .venv/bin/python benchmarks/bench_faces.py

Faces: scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper portrait, each in a
960x540 frame on a textured background, moved to three places, scaled (face about 60, 120 and
240 pixels wide), turned by +-30 degrees and converted to gray; scikit-image's cameraman (a small
three-quarter face); the 100 faces of scikit-image's LFW subset (25x25 pixels, many turned, shown
at 100 pixels). Non-faces, where every detection is a false positive: the subset's 100 non-face
patches, eight scikit-image photographs without people (a cat, coffee, a rocket ...) and colour bars.
"""

from __future__ import annotations

import time

import cv2
import matplotlib.cbook
import numpy as np
from PIL import Image
from skimage import data

from dfer_pd.common.machine import machine_line
from dfer_pd.faces.tracking import DlibHogFaceDetector, FallbackDetector, HaarFaceDetector, detect_boxes

FRAME = (540, 960)


def background(rng: np.random.Generator) -> np.ndarray:
    """A textured, non-uniform backdrop (smoothed noise): detectors must not fire on it."""
    noise = rng.integers(0, 255, size=(FRAME[0] // 8, FRAME[1] // 8, 3), dtype=np.uint8)
    return cv2.resize(noise, (FRAME[1], FRAME[0]), interpolation=cv2.INTER_CUBIC)


def place(face_image: np.ndarray, face_width: float, target_width: float, x: float, y: float, angle: float,
          rng: np.random.Generator) -> np.ndarray:
    """``face_image`` (whose face is ``face_width`` px wide) scaled to a ``target_width`` face, turned, centred at (x, y)."""
    frame = background(rng)
    scale = target_width / face_width
    h, w = face_image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += np.array([x, y]) - np.array([w / 2, h / 2])
    warped = cv2.warpAffine(face_image, matrix, (FRAME[1], FRAME[0]), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((h, w), 255, np.uint8), matrix, (FRAME[1], FRAME[0]))
    frame[mask > 0] = warped[mask > 0]
    return frame


def real_faces() -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    astronaut = data.astronaut()[0:260, 100:360]  # head and shoulders; face about 90 px wide
    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))[60:480, 80:440]
    sets: dict[str, list[np.ndarray]] = {}
    for name, image, face_width in (("astronaut", astronaut, 90.0), ("hopper", hopper, 200.0)):
        sets[f"{name} moved (3 places, 120 px face)"] = [place(image, face_width, 120, x, y, 0, rng)
                                                         for x, y in ((200, 200), (480, 300), (760, 330))]
        sets[f"{name} scaled (60 / 240 px face)"] = [place(image, face_width, w, 480, 270, 0, rng) for w in (60, 240)]
        sets[f"{name} turned +-30 deg"] = [place(image, face_width, 140, 480, 270, a, rng) for a in (30, -30)]
        sets[f"{name} gray"] = [np.repeat(cv2.cvtColor(place(image, face_width, 120, 480, 270, 0, rng),
                                                       cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)]
    sets["cameraman (three-quarter, ~60 px)"] = [np.repeat(data.camera()[..., None], 3, axis=2)]
    lfw = data.lfw_subset()
    sets["LFW subset faces (100)"] = [_lfw(f) for f in lfw[:100]]
    return sets


def _lfw(patch: np.ndarray) -> np.ndarray:
    image = cv2.resize((patch * 255).astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
    return np.repeat(np.pad(image, 40, mode="edge")[..., None], 3, axis=2)


def non_faces() -> list[np.ndarray]:
    images = [_lfw(p) for p in data.lfw_subset()[100:]]
    for name in ("chelsea", "coffee", "rocket", "moon", "brick", "grass", "coins", "hubble_deep_field"):
        image = getattr(data, name)()
        images.append(image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2))
    bars = np.zeros((360, 640, 3), np.uint8)
    for i, colour in enumerate([(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0), (0, 0, 192)]):
        bars[:, i * 640 // 7:(i + 1) * 640 // 7] = colour
    images.append(bars)
    return images


def main() -> None:
    detectors = {
        "haar (OpenCV frontal cascade)": HaarFaceDetector(),
        "dlib HOG, upright only": DlibHogFaceDetector(retry_upsample=0, roll_search=()),
        "dlib HOG (default: retries x2 and +-30 deg)": DlibHogFaceDetector(),
        "dlib HOG, threshold -0.5": DlibHogFaceDetector(threshold=-0.5),
        "dlib HOG + haar fallback (FaceCropSettings default)": FallbackDetector(DlibHogFaceDetector(), HaarFaceDetector()),
    }
    faces, negatives = real_faces(), non_faces()
    timing_frame = faces["astronaut moved (3 places, 120 px face)"][0]
    names = list(faces)
    print("| detector | " + " | ".join(names) + " | false positives on 109 non-face images | ms per 960x540 frame |")
    print("|---|" + "---|" * (len(names) + 2))
    for label, detector in detectors.items():
        cells = []
        for name in names:
            found = sum(len(detect_boxes(detector, image)) > 0 for image in faces[name])
            cells.append(f"{found}/{len(faces[name])}")
        false = sum(len(detect_boxes(detector, image)) for image in negatives)
        detect_boxes(detector, timing_frame)
        started = time.perf_counter()
        for _ in range(10):
            detect_boxes(detector, timing_frame)
        ms = (time.perf_counter() - started) * 100
        print(f"| {label} | " + " | ".join(cells) + f" | {false} | {ms:.0f} |")


if __name__ == "__main__":
    print(machine_line(), flush=True)  # every figure names the machine it was measured on
    main()
