"""Quality measured where it means something: blur and brightness on the face region at source resolution
(thresholds checked on real faces, sharp and deliberately blurred), a blurred copy of a sharp clip, a photo
given as a video, and the check every video passes before it is scored."""

import cv2
import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image
from skimage import data

from dfer_pd.faces.settings import FaceCropSettings
from dfer_pd.faces.tracking import DlibHogFaceDetector, read_face_clip
from dfer_pd.faces.measures import BLURRY_LAPLACIAN_VARIANCE, STILL_IMAGE_MOTION, blur_score, face_measures
from dfer_pd.stage1.quality import check_video, video_quality
from dfer_pd.stage1.contract import ScoringContract
from dfer_pd.synthetic.encode import encode_mp4

HOPPER = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
REAL_FACES = {"astronaut": data.astronaut(), "hopper": HOPPER}


def gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


@pytest.mark.parametrize("name", sorted(REAL_FACES))
def test_blur_threshold_separates_sharp_from_blurred_real_faces(name):
    image = REAL_FACES[name]
    box = DlibHogFaceDetector().detect(image)[:1, :4]
    sharp = blur_score(image[None], box)
    soft = blur_score(gaussian(image, 1.0)[None], box)
    blurred = [blur_score(gaussian(image, sigma)[None], box) for sigma in (2.0, 3.0)]
    assert sharp > 10 * BLURRY_LAPLACIAN_VARIANCE  # sharp faces are far above the threshold...
    assert soft > BLURRY_LAPLACIAN_VARIANCE  # ...slightly soft ones (sigma 1 px) still pass...
    assert max(blurred) < BLURRY_LAPLACIAN_VARIANCE  # ...and blur of sigma 2 px and more is flagged
    # Measured on the face at source resolution: the whole frame's background does not count.
    assert face_measures(image[None], box)["brightness"] != pytest.approx(face_measures(image[None])["brightness"], abs=1)


def moving_astronaut(frames: int = 12) -> np.ndarray:
    """The astronaut's head moving across a 640x360 frame with a textured background."""
    rng = np.random.default_rng(0)
    patch = data.astronaut()[0:260, 100:360]
    video = []
    for i in range(frames):
        frame = cv2.resize(rng.integers(60, 200, (45, 80, 3), dtype=np.uint8), (640, 360), interpolation=cv2.INTER_CUBIC)
        x, y = 60 + 25 * i, 40 + 5 * i
        frame[y:y + 260, x:x + 260] = patch
        video.append(frame)
    return np.stack(video)


def test_blurred_copy_of_a_sharp_clip_is_flagged_and_the_sharp_one_is_not(tmp_path):
    frames = moving_astronaut()
    sharp = encode_mp4(tmp_path / "sharp.mp4", frames, fps=10)
    blurred = encode_mp4(tmp_path / "blurred.mp4", np.stack([gaussian(f, 2.5) for f in frames]), fps=10)
    results = {}
    for path in (sharp, blurred):
        crops, report = read_face_clip(path, num_frames=6, size=64)  # small model crops, as the demo's
        results[path.stem] = video_quality(path, crops, report, duration_seconds=6.0)
    assert not results["sharp"]["blurry"] and results["sharp"]["flags"] == []
    assert results["blurred"]["blurry"] and results["blurred"]["flags"] == ["blurry"]
    assert results["sharp"]["blur"] > 5 * results["blurred"]["blur"]


def test_photo_given_as_a_video_is_a_still_image(tmp_path):
    frame = moving_astronaut(1)[0]
    still = encode_mp4(tmp_path / "photo_as_video.mp4", np.stack([frame] * 30), fps=10)
    photo = tmp_path / "photo.png"
    Image.fromarray(frame).save(photo)
    live = encode_mp4(tmp_path / "live.mp4", moving_astronaut(), fps=10)
    for path, expected in ((still, True), (photo, True), (live, False)):
        crops, report = read_face_clip(path, num_frames=6, size=64)
        quality = video_quality(path, crops, report, duration_seconds=6.0)
        assert quality["still_image"] is expected, (path, quality["motion"])
        assert (quality["reasons"] == ["a still image, not a video (an expression needs motion)"]) is expected
    assert quality["motion"] > 10 * STILL_IMAGE_MOTION  # the live clip moves


def test_check_video_reads_as_scoring_does_and_names_what_is_wrong(tmp_path, tiny_stage1_checkpoint):
    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint, FaceCropSettings(crop_faces=True))
    live = check_video(encode_mp4(tmp_path / "live.mp4", moving_astronaut(), fps=10), contract, duration_seconds=6.0)
    assert live.usable and live.clip.pixel_values.shape[0] == contract.num_frames
    assert live.quality["decoded_share"] == 1.0 and live.clip.face_report.aligned
    blank = check_video(encode_mp4(tmp_path / "blank.mp4", np.full((12, 64, 96, 3), 90, np.uint8), fps=10), contract)
    assert not blank.usable and blank.reasons[0].startswith("no face found (face found in 0 of")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert "not a readable video file" in check_video(text, contract).reasons[0]
    # Videos given as face crops (no cropping) must still show a face: colour bars do not.
    bars = np.zeros((12, 64, 64, 3), np.uint8)
    for i, colour in enumerate([(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0)]):
        bars[:, :, i * 16:(i + 1) * 16] = colour
    bars[:, :, :, 0] += np.arange(12, dtype=np.uint8)[:, None, None]  # moving, so only the face is missing
    plain = ScoringContract.from_checkpoint(tiny_stage1_checkpoint)
    checked = check_video(encode_mp4(tmp_path / "bars.mp4", bars, fps=10), plain, duration_seconds=6.0)
    assert checked.reasons[0].startswith("no face found") and "no_face" in checked.quality["flags"]


def test_every_problem_of_a_video_is_named_plainly(tmp_path, tiny_stage1_checkpoint):
    """A video both faceless and cut short gets both flags and both reasons; messages carry no errno and no path."""
    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint, FaceCropSettings(crop_faces=True))
    noise = np.random.default_rng(0).integers(60, 120, (120, 64, 96, 3), dtype=np.uint8)  # no face, many bytes
    whole = encode_mp4(tmp_path / "blank.mp4", noise, fps=10, faststart=True).read_bytes()
    cut = tmp_path / "blank_cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    checked = check_video(cut, contract)
    assert checked.quality["flags"] == ["no_face", "truncated"], checked.quality
    assert checked.reasons[0].startswith("no face found") and checked.reasons[1].startswith("truncated: only")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    unreadable = check_video(text, contract)
    assert unreadable.quality["flags"] == ["unreadable"]
    assert "Errno" not in unreadable.reasons[0] and str(tmp_path) not in unreadable.reasons[0]
    assert unreadable.reasons[0].startswith("not a readable video file (")

