"""Face detection and cropping of raw videos: a real face (scikit-image's astronaut) moved and scaled
through an mp4 must be found and cropped in every frame; no face, two faces and a face leaving the
picture must give a clear error, the larger face, and padded, interpolated crops; aligned crops put
the eyes level at a fixed distance, also for a head tilted 50 degrees; a photo's five faces are counted."""

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from dfer_pd.faces.cache import FaceCropCache
from dfer_pd.faces.settings import FaceCropSettings
from dfer_pd.faces.tracking import (
    DETECTORS,
    DlibHogFaceDetector,
    FallbackDetector,
    HaarFaceDetector,
    NoFaceError,
    build_detector,
    detector_for,
    crop_square,
    moving_median,
    read_face_clip,
    square_boxes,
    track_face,
)
from dfer_pd.faces.landmarks import DlibLandmarker, eye_geometry
from dfer_pd.synthetic.encode import encode_mp4
from dfer_pd.common.video import VideoReadError, read_frames

ASTRONAUT = data.astronaut()
# Head and shoulders around the astronaut's face, and the face's box (Haar-sized) inside that patch.
PATCH = ASTRONAUT[20:220, 120:330]
PATCH_FACE = np.array([57.0, 46.0, 152.0, 141.0])


def paste_patch(canvas: np.ndarray, x: int, y: int, scale: float) -> np.ndarray:
    """Paste the astronaut patch scaled by ``scale`` with its top-left at (x, y); return the true face box."""
    patch = cv2.resize(PATCH, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    height, width = canvas.shape[:2]
    rows = slice(max(y, 0), min(y + patch.shape[0], height))
    cols = slice(max(x, 0), min(x + patch.shape[1], width))
    canvas[rows, cols] = patch[rows.start - y : rows.stop - y, cols.start - x : cols.stop - x]
    return PATCH_FACE * scale + [x, y, x, y]


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(90, 140, size=(height, width, 3), dtype=np.uint8)


def scene_video(path: Path, height: int, width: int, placements, seed: int = 0) -> tuple[Path, np.ndarray]:
    """An mp4 with the astronaut at ``(x, y, scale)`` per frame (None: no face); its true face boxes."""
    rng = np.random.default_rng(seed)
    frames, faces = [], []
    for placement in placements:
        frame = background(rng, height, width)
        faces.append(np.full(4, np.nan) if placement is None else paste_patch(frame, *placement))
        frames.append(frame)
    return encode_mp4(path, np.stack(frames), fps=10), np.stack(faces)


def centres(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def sides(boxes: np.ndarray) -> np.ndarray:
    return boxes[:, 2] - boxes[:, 0]


# --------------------------------------------------------------------------- real face in a video


@pytest.fixture(scope="module")
def moving_face(tmp_path_factory):
    # 12 frames: the face drifts right and down while growing from 57 to 114 pixels.
    placements = [(30 + 30 * i, 20 + 8 * i, 0.6 + 0.6 * i / 11) for i in range(12)]
    return scene_video(tmp_path_factory.mktemp("faces") / "astronaut.mp4", 360, 640, placements)


def test_real_face_found_and_cropped_in_every_frame(moving_face):
    path, true_faces = moving_face
    crops, report = read_face_clip(path, num_frames=12, settings=FaceCropSettings(detector="haar", align=False, margin=1.25), size=112)
    assert crops.shape == (12, 112, 112, 3) and crops.dtype == np.uint8
    assert report.frame_indices.tolist() == list(range(12))
    assert report.detected.all() and report.face_fraction == 1.0 and report.num_faces_max == 1

    true_side = sides(true_faces)
    # The crop is centred on the true face in every frame, within 8% of the face side...
    offset = np.linalg.norm(centres(report.crop_boxes) - centres(true_faces), axis=1)
    assert (offset < 0.08 * true_side).all(), offset / true_side
    # ...is square, 1.25 face sides wide, and grows with the face (twice as large at the end).
    crop_side = sides(report.crop_boxes)
    np.testing.assert_allclose(crop_side, report.crop_boxes[:, 3] - report.crop_boxes[:, 1])
    np.testing.assert_allclose(crop_side / (1.25 * true_side), 1.0, atol=0.1)
    assert 1.8 < crop_side[-1] / crop_side[0] < 2.2
    assert np.corrcoef(crop_side, true_side)[0, 1] > 0.98

    # The pixels are the face: each crop matches the same square cut around the true box.
    frames = read_frames(path, list(range(12)))
    expected = [crop_square(f, b, 112) for f, b in zip(frames, square_boxes(true_faces, 1.25))]
    difference = np.abs(crops.astype(int) - np.stack(expected).astype(int)).mean(axis=(1, 2, 3))
    assert (difference < 25).all(), difference
    noise_crop = crop_square(frames[0], np.array([500, 200, 600, 300]), 112)
    assert np.abs(crops[0].astype(int) - noise_crop.astype(int)).mean() > 2 * difference.max()


def test_face_clip_samples_only_m_frames(moving_face):
    path, true_faces = moving_face
    crops, report = read_face_clip(path, num_frames=4, size=64)
    # Eval sampling takes segment centres of 12 frames: 1, 4, 7, 10.
    assert report.frame_indices.tolist() == [1, 4, 7, 10] and crops.shape == (4, 64, 64, 3)
    offset = np.linalg.norm(centres(report.crop_boxes) - centres(true_faces[[1, 4, 7, 10]]), axis=1)
    assert (offset < 0.08 * sides(true_faces[[1, 4, 7, 10]])).all()


def test_no_face_raises_naming_the_file(tmp_path):
    path, _ = scene_video(tmp_path / "noise.mp4", 240, 320, [None] * 12)
    with pytest.raises(NoFaceError, match=r"noise\.mp4: face found in 0 of 8 sampled frames") as error:
        read_face_clip(path, num_frames=8)
    assert isinstance(error.value, VideoReadError)  # callers that skip unreadable videos skip it too


def test_two_faces_pick_the_larger(tmp_path):
    rng = np.random.default_rng(1)
    frames, large_faces = [], []
    for i in range(8):
        frame = background(rng, 300, 640)
        paste_patch(frame, 20 + 2 * i, 60, 0.8)  # the smaller person, left
        large_faces.append(paste_patch(frame, 330 - 2 * i, 20, 1.2))  # the main person, right
        frames.append(frame)
    path = encode_mp4(tmp_path / "two.mp4", np.stack(frames), fps=10)
    crops, report = read_face_clip(path, num_frames=8, size=64)
    assert report.num_faces_max == 2
    offset = np.linalg.norm(centres(report.crop_boxes) - centres(np.stack(large_faces)), axis=1)
    assert (offset < 0.08 * sides(np.stack(large_faces))).all()


def test_face_leaving_the_frame_is_padded_and_interpolated(tmp_path):
    # The face slides right until it is partly outside (x >= 370: not detected); frame 4 has no face.
    placements = [(200 + 20 * i, 40, 0.8) for i in range(12)]
    placements[4] = None
    path, true_faces = scene_video(tmp_path / "leaving.mp4", 240, 480, placements)
    crops, report = read_face_clip(path, num_frames=12, settings=FaceCropSettings(detector="haar", align=False), size=64, pad_mode="constant")
    assert crops.shape == (12, 64, 64, 3)
    missing = np.flatnonzero(~report.detected)
    assert 4 in missing and {10, 11} <= set(missing.tolist()) and report.face_fraction >= 0.5
    # The gap is filled from its neighbours: halfway between frames 3 and 5.
    np.testing.assert_allclose(centres(report.face_boxes)[4], centres(true_faces[[3, 5]]).mean(axis=0), atol=4)
    # After the last detection the box stays where the face was last seen...
    last_seen = missing.min() if missing.min() > 4 else np.sort(missing)[1]
    np.testing.assert_allclose(report.face_boxes[last_seen:], report.face_boxes[[last_seen - 1]].repeat(12 - last_seen, 0))
    # ...whose crop runs past the right border and is padded with zeros there, not squeezed.
    assert report.crop_boxes[-1, 2] > 480
    assert crops[-1, :, -2:].max() <= 16 and crops[-1, :, : 64 // 2].std() > 10


# --------------------------------------------------------------------------- tracking logic


class ScriptedDetector:
    """Returns preset boxes for the frame whose first pixel holds its number."""

    def __init__(self, boxes_per_frame):
        self.boxes_per_frame = boxes_per_frame
        self.calls = 0

    def detect(self, rgb):
        self.calls += 1
        return np.asarray(self.boxes_per_frame[int(rgb[0, 0, 0])], dtype=float).reshape(-1, 4)


def numbered_frames(count: int, height: int = 200, width: int = 300) -> np.ndarray:
    frames = np.full((count, height, width, 3), 100, np.uint8)
    frames[:, 0, 0, 0] = np.arange(count)
    return frames


def test_main_track_is_large_and_persistent_and_one_offs_are_not_faces():
    steady = [[100 + 2 * i, 50, 160 + 2 * i, 110] for i in range(10)]
    script = [[box] for box in steady]
    script[2].append([0, 0, 150, 150])  # a large false positive (6 times the face's area) in two frames
    script[7].append([140, 40, 290, 190])
    script[5].append([10, 150, 30, 170])  # a small one in one frame
    _, report = track_face(numbered_frames(10), FaceCropSettings(smooth_window=1), detector=ScriptedDetector(script), size=32)
    np.testing.assert_allclose(report.face_boxes, steady)
    assert report.num_faces_max == 1  # seen in under a quarter of the frames: not a second person


def test_second_face_counted_when_it_persists():
    script = [[[100, 50, 160, 110], [200, 60, 240, 100]] for _ in range(6)]
    _, report = track_face(numbered_frames(6), detector=ScriptedDetector(script), size=32)
    assert report.num_faces_max == 2
    np.testing.assert_allclose(report.face_boxes, [[100, 50, 160, 110]] * 6)


def test_moving_median_removes_a_one_frame_jump_and_keeps_motion():
    script = [[[100, 50, 160, 110]] for i in range(9)]
    script[4] = [[125, 45, 195, 115]]  # one frame jumps 35 px and grows
    _, report = track_face(numbered_frames(9), detector=ScriptedDetector(script), size=32)
    np.testing.assert_allclose(report.face_boxes, [[100, 50, 160, 110]] * 9)
    _, unsmoothed = track_face(numbered_frames(9), FaceCropSettings(smooth_window=1), detector=ScriptedDetector(script), size=32)
    np.testing.assert_allclose(unsmoothed.face_boxes[4], [125, 45, 195, 115])
    # Steady motion passes through unchanged.
    motion = np.stack([np.arange(6.0), 2 * np.arange(6.0)], axis=1)
    np.testing.assert_allclose(moving_median(motion, 3), motion)


def test_detect_every_k_and_repeated_indices_detect_each_frame_once():
    script = [[[10 * i, 50, 10 * i + 60, 110]] for i in range(9)]
    detector = ScriptedDetector(script)
    _, report = track_face(numbered_frames(9), FaceCropSettings(detect_every=4), detector=detector, size=32)
    assert detector.calls == 3 and report.examined.tolist() == [i in (0, 4, 8) for i in range(9)]
    # Frames in between are interpolated over time.
    np.testing.assert_allclose(centres(report.face_boxes)[:, 0], 30 + 10 * np.arange(9))
    # A short clip's repeated last frame (indices 0,1,2,2,2) is looked at once.
    frames = numbered_frames(3)[[0, 1, 2, 2, 2]]
    detector = ScriptedDetector(script)
    crops, report = track_face(frames, frame_indices=np.array([0, 1, 2, 2, 2]), detector=detector, size=32)
    assert detector.calls == 3 and crops.shape == (5, 32, 32, 3) and report.face_fraction == 1.0


def test_too_few_faces_message_counts_frames():
    script = [[[10, 10, 70, 70]] if i < 2 else [] for i in range(16)]
    with pytest.raises(NoFaceError, match=r"subject\.mov: face found in 2 of 16 sampled frames \(need at least 50%\)"):
        track_face(numbered_frames(16), detector=ScriptedDetector(script), source="subject.mov")
    _, report = track_face(numbered_frames(16), FaceCropSettings(min_face_fraction=0.1), detector=ScriptedDetector(script), size=8)
    assert report.face_fraction == 2 / 16


def test_crop_square_pads_and_resizes():
    frame = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    inside = crop_square(frame, np.array([2, 1, 8, 7]), 6)
    np.testing.assert_array_equal(inside, frame[1:7, 2:8])
    zeros = crop_square(frame, np.array([-3, -3, 3, 3]), 6, pad_mode="constant")
    assert zeros[:3].max() == 0 and zeros[:, :3].max() == 0
    np.testing.assert_array_equal(zeros[3:, 3:], frame[:3, :3])
    edge = crop_square(frame, np.array([17, 5, 23, 11]), 6, pad_mode="edge")
    np.testing.assert_array_equal(edge[:, 3:], np.repeat(frame[5:10, 19:20], 3, axis=1)[[0, 1, 2, 3, 4, 4]])
    far = crop_square(frame, np.array([100, 100, 110, 110]), 4)  # wholly outside: nudged to touch the frame
    assert far.shape == (4, 4, 3)


# --------------------------------------------------------------------------- detectors and cache


def test_detector_registry_and_pickling():
    assert isinstance(build_detector("haar"), HaarFaceDetector)
    with pytest.raises(ValueError, match="unknown face detector 'retina'.*haar"):
        build_detector("retina")
    with pytest.raises(TypeError, match="detect"):
        build_detector(object())
    detector = HaarFaceDetector(min_neighbors=4)
    detector.detect(np.zeros((40, 40, 3), np.uint8))  # loads the cascade
    clone = pickle.loads(pickle.dumps(detector))  # DataLoader workers get a copy
    assert clone == detector and len(clone.detect(ASTRONAUT)) >= 1


def test_haar_finds_the_astronaut_at_4k_quickly():
    frame = np.zeros((2160, 3840, 3), np.uint8)
    face = paste_patch(frame, 1500, 700, 4.0)
    boxes = HaarFaceDetector().detect(frame)
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0], face, atol=0.1 * (face[2] - face[0]))


@pytest.mark.skipif("dlib" not in DETECTORS, reason="dlib is not installed (optional detector)")
def test_dlib_hog_detector_finds_the_astronaut():
    boxes = build_detector("dlib").detect(ASTRONAUT)
    face = PATCH_FACE + [120, 20, 120, 20]
    assert boxes.shape == (1, 5) and boxes[0, 4] == 0  # upright, and her suit is no second face
    assert np.linalg.norm(centres(boxes[:, :4])[0] - centres(face[None])[0]) < 15


def turned(image: np.ndarray, degrees: float) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def assert_aligned(crops: np.ndarray, eye_distance: float = 0.3, eye_line: float = 0.4) -> None:
    """The landmarks found again in each crop put the eyes level, at the set distance and height."""
    size = crops.shape[1]
    for crop in crops:
        boxes = DlibHogFaceDetector(upsample=1).detect(crop)
        assert len(boxes) == 1 and boxes[0, 4] == 0
        x, y, distance, angle = eye_geometry(DlibLandmarker().predict(crop, boxes[0, :4]))
        assert abs(angle) < 4 and abs(distance / (eye_distance * size) - 1) < 0.1, (angle, distance)
        assert abs(x - size / 2) < 0.04 * size and abs(y - eye_line * size) < 0.04 * size, (x, y)


def test_aligned_crops_put_the_eyes_level_at_a_fixed_distance(moving_face):
    path, true_faces = moving_face
    crops, report = read_face_clip(path, num_frames=6, size=112)
    assert report.aligned and report.landmarks.shape == (6, 68, 2) and report.face_fraction == 1.0
    assert_aligned(crops)
    # The landmarks are the astronaut's: her eyes inside the upper half of the true face box.
    eyes = eye_geometry(report.landmarks)
    faces = true_faces[report.frame_indices]
    assert ((eyes[:, 0] > faces[:, 0]) & (eyes[:, 0] < faces[:, 2])).all()
    assert ((eyes[:, 1] > faces[:, 1]) & (eyes[:, 1] < (faces[:, 1] + faces[:, 3]) / 2)).all()
    looser, _ = read_face_clip(path, num_frames=6, settings=FaceCropSettings(eye_distance=0.25, eye_line=0.42), size=160)
    assert_aligned(looser, 0.25, 0.42)


@pytest.mark.parametrize("degrees", [50, -50])
def test_tilted_head_found_by_turning_the_frame_and_aligned_upright(tmp_path, degrees):
    frame = np.full((360, 480, 3), 120, np.uint8)
    paste_patch(frame, 130, 60, 1.2)
    frame = turned(frame, degrees)
    upright_only = DlibHogFaceDetector(retry_upsample=0, roll_search=())
    assert len(upright_only.detect(frame)) == 0  # beyond what the upright search tolerates
    boxes = DlibHogFaceDetector().detect(frame)
    # Found in the frame turned back by 30 degrees: the fifth column says so.
    assert len(boxes) >= 1 and set(boxes[:, 4]) == {-30.0 if degrees > 0 else 30.0}
    path = encode_mp4(tmp_path / "tilted.mp4", np.stack([frame] * 4), fps=10)
    crops, report = read_face_clip(path, num_frames=4, size=96)
    assert report.face_fraction == 1.0
    assert_aligned(crops)
    assert abs(eye_geometry(report.landmarks)[:, 3].mean() + degrees) < 12  # the eyes in the frame are tilted


def test_photo_with_five_faces_counts_five(tmp_path):
    photo = np.full((400, 640, 3), 110, np.uint8)
    for x, y in [(0, 0), (215, 10), (430, 0), (100, 215), (330, 220)]:
        paste_patch(photo, x, y, 0.9)
    path = tmp_path / "group.png"
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    crops, report = read_face_clip(path, num_frames=4, size=32)  # a photo read as a one-frame video
    assert report.frame_indices.tolist() == [0, 0, 0, 0] and report.num_faces_max == 5
    single = tmp_path / "single.png"
    cv2.imwrite(str(single), cv2.cvtColor(photo[:, :190], cv2.COLOR_RGB2BGR))
    assert read_face_clip(single, num_frames=4, size=32)[1].num_faces_max == 1


def test_the_settings_detector_has_its_threshold_and_fallback():
    settings = FaceCropSettings(crop_faces=True, detector_threshold=0.5, fallback_detector="haar")
    detector = detector_for(settings)
    assert isinstance(detector, FallbackDetector) and detector.primary.threshold == 0.5
    assert isinstance(detector.fallback, HaarFaceDetector)
    assert isinstance(detector_for(FaceCropSettings()), DlibHogFaceDetector)  # the default: dlib, no fallback
    with pytest.raises(ValueError, match="eye_distance"):
        FaceCropSettings(eye_distance=1.5)


def test_crop_cache_reuses_crops_until_settings_change(moving_face, tmp_path):
    path, _ = moving_face
    detector = HaarFaceDetector()
    calls = []

    class Counting:
        def detect(self, rgb):
            calls.append(1)
            return detector.detect(rgb)

        def __repr__(self):
            return "Counting()"

    cache = FaceCropCache(tmp_path / "crops")
    first, first_report = read_face_clip(path, num_frames=4, size=32, detector=Counting(), cache=cache)
    assert len(calls) == 4
    again, again_report = read_face_clip(path, num_frames=4, size=32, detector=Counting(), cache=cache)
    assert len(calls) == 4  # read from disk
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first_report.crop_boxes, again_report.crop_boxes)
    assert again_report.face_fraction == first_report.face_fraction and again_report.frame_size == (360, 640)
    read_face_clip(path, num_frames=4, settings=FaceCropSettings(margin=1.5), size=32, detector=Counting(), cache=cache)
    assert len(calls) == 8  # new settings, new crops
    assert not list((tmp_path / "crops").rglob("*.tmp"))
    with pytest.raises(ValueError, match="eval sampling only"):
        read_face_clip(path, 4, mode="train", rng=np.random.default_rng(0), cache=cache)
