"""The bad-input suite for videos: every file a user may feed the reader either gives a clear
VideoReadError naming the file and the problem, or the right frames as RGB uint8 (T, H, W, 3).

Each case writes its own file with PyAV (``helpers.write_video``): frames carry their number and a
mark in the top-left corner, so both the frame and its orientation can be checked.
"""

from pathlib import Path

import av
import numpy as np
import pytest

from helpers import frame_numbers, numbered_frame, write_video
from dfer_pd.stage1.datasets.base import ClipRecord, check_readable
from dfer_pd.faces.tracking import NoFaceError, read_face_clip
from dfer_pd.common.sampling import sample_frame_indices
from dfer_pd.common.video import VideoReadError, count_frames, read_clip, read_video_frames
from dfer_pd.common.video import video_duration
from dfer_pd.faces.measures import BLURRY_LAPLACIAN_VARIANCE, blur_score
from dfer_pd.stage1.quality import MIN_DURATION_SECONDS, video_quality


def assert_rgb_frames(frames: np.ndarray, count: int, height: int, width: int) -> None:
    assert frames.dtype == np.uint8 and frames.shape == (count, height, width, 3)


# --------------------------------------------------------------------------- unreadable files


def truncated_mp4(folder: Path) -> Path:
    # PyAV writes the mp4 index (moov) at the end: cut mid-file, the frames cannot be located.
    full = write_video(folder / "full.mp4", 40)
    data = full.read_bytes()
    path = folder / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


def audio_only(folder: Path) -> Path:
    path = folder / "voice.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _missing(folder: Path) -> Path:
    return folder / "absent.mp4"


def _zero_bytes(folder: Path) -> Path:
    (folder / "zero.mp4").touch()
    return folder / "zero.mp4"


def _text(folder: Path) -> Path:
    (folder / "notes.mp4").write_text("shopping list: milk, eggs\n" * 40)
    return folder / "notes.mp4"


UNREADABLE = {
    "missing file": (_missing, r"absent\.mp4: no such file"),
    "zero-byte file": (_zero_bytes, r"zero\.mp4: file is empty \(0 bytes\)"),
    "text renamed .mp4": (_text, r"notes\.mp4: not a readable video file"),
    "mp4 cut mid-file": (truncated_mp4, r"cut\.mp4: not a readable video file \(.*Invalid data"),
    "audio only": (audio_only, r"voice\.m4a: has no video stream \(streams: audio\)"),
}

# Every road a video takes: training/extraction, the raw-video face path, the report, the
# up-front check that lists unreadable clips instead of dropping them.
ENTRY_POINTS = {
    "read_clip": lambda path: read_clip(path, num_frames=4),
    "read_face_clip": lambda path: read_face_clip(path, num_frames=4),
    "video_duration": video_duration,
    "check_readable": lambda path: _raise_listed_problem(path),
}


def _raise_listed_problem(path: Path) -> None:
    readable, failed = check_readable([ClipRecord("S001/happiness", path)], workers=1)
    assert readable == [] and list(failed) == ["S001/happiness"]
    raise VideoReadError(failed["S001/happiness"])


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_file_gives_clear_error(tmp_path, case, entry):
    make, message = UNREADABLE[case]
    path = make(tmp_path)
    with pytest.raises(VideoReadError, match=message):
        ENTRY_POINTS[entry](path)


def test_mp4_cut_mid_data_keeps_the_frames_that_decode(tmp_path):
    # With the index at the front (faststart) a cut file opens; frames past the cut get the last
    # decodable one, and the report says so.
    full = write_video(tmp_path / "full.mp4", 60, container_options={"movflags": "faststart"})
    data = full.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: 2 * len(data) // 3])
    assert count_frames(path) == 60  # the index still claims 60
    indices = sample_frame_indices(60, 8)
    frames, report = read_video_frames(path, indices)
    assert_rgb_frames(frames, 8, 48, 64)
    assert report.clamped and 0 < report.frames_decoded < 60
    kept = indices <= report.last_index
    assert frame_numbers(frames[kept]) == indices[kept].tolist()
    assert set(frame_numbers(frames[~kept])) == {report.last_index}


# --------------------------------------------------------------------------- lengths


def test_one_frame_video_gives_m_copies(tmp_path):
    path = write_video(tmp_path / "still.mp4", 1)
    frames, indices = read_clip(path, num_frames=16)
    assert_rgb_frames(frames, 16, 48, 64)
    assert indices.tolist() == [0] * 16 and frame_numbers(frames) == [0] * 16


def test_video_shorter_than_m_repeats_the_last_frame(tmp_path):
    path = write_video(tmp_path / "short.mp4", 5)
    frames, indices = read_clip(path, num_frames=16)
    assert indices.tolist() == [0, 1, 2, 3, 4] + [4] * 11
    assert frame_numbers(frames) == indices.tolist()
    train, train_indices = read_clip(path, num_frames=16, mode="train", rng=np.random.default_rng(0))
    assert len(train) == 16 and frame_numbers(train) == train_indices.tolist()


def test_very_long_video_decodes_only_near_the_sampled_frames(tmp_path):
    # 3000 frames (2 minutes at 25 fps), a keyframe every 50: 16 sampled frames need at most
    # 50 decoded frames each.
    path = write_video(
        tmp_path / "long.mp4", 3000, height=24, width=32, options={"x264-params": "keyint=50:scenecut=0"}
    )
    indices = sample_frame_indices(count_frames(path), 16)
    frames, report = read_video_frames(path, indices)
    assert [n % 512 for n in indices.tolist()] == frame_numbers(frames)
    assert report.seeks >= 15 and report.frames_decoded <= 16 * 50 < 3000 / 3


@pytest.mark.parametrize("codec, pix_fmt, suffix", [("libx264", "yuv420p", "mp4"), ("mjpeg", "yuvj420p", "avi")])
def test_huge_4k_video(tmp_path, codec, pix_fmt, suffix):
    options = {"preset": "ultrafast"} if codec == "libx264" else {}
    path = write_video(tmp_path / f"uhd.{suffix}", 2, codec, pix_fmt, height=2160, width=3840, options=options)
    frames, indices = read_clip(path, num_frames=3)
    assert_rgb_frames(frames, 3, 2160, 3840)
    assert frame_numbers(frames) == indices.tolist() == [0, 1, 1]


def test_tiny_32px_video_reads_and_has_no_face(tmp_path):
    path = write_video(tmp_path / "tiny.mp4", 10, height=32, width=32)
    frames, indices = read_clip(path, num_frames=4)
    assert_rgb_frames(frames, 4, 32, 32)
    assert frame_numbers(frames) == indices.tolist()
    with pytest.raises(NoFaceError, match=r"tiny\.mp4: face found in 0 of 4 sampled frames"):
        read_face_clip(path, num_frames=4)


# --------------------------------------------------------------------------- sizes and orientation


@pytest.mark.parametrize(
    "codec, pix_fmt, suffix",
    [("libx264", "yuv444p", "mp4"), ("mjpeg", "yuvj420p", "avi"), ("ffv1", "yuv444p", "mkv")],
)
def test_odd_frame_size(tmp_path, codec, pix_fmt, suffix):
    # H.264 4:2:0 cannot store 47x33; 4:4:4, MJPEG and FFV1 can.
    path = write_video(tmp_path / f"odd.{suffix}", 12, codec, pix_fmt, height=33, width=47)
    frames, indices = read_clip(path, num_frames=6)
    assert_rgb_frames(frames, 6, 33, 47)
    assert frame_numbers(frames) == indices.tolist()


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_gives_display_orientation(tmp_path, rotation):
    # Stored 48 high and 64 wide with the white mark top-left; the display matrix asks for a
    # counter-clockwise turn of `rotation` degrees, as phones record in portrait.
    path = write_video(tmp_path / f"phone{rotation}.mp4", 6, rotation=rotation)
    frames, indices = read_clip(path, num_frames=3)
    turns = rotation // 90
    expected = np.stack([np.rot90(numbered_frame(i, 48, 64), k=turns) for i in indices])
    assert frames.shape == expected.shape == ((3, 64, 48, 3) if turns % 2 else (3, 48, 64, 3))
    assert np.abs(frames.astype(int) - expected.astype(int)).mean() < 4
    assert frame_numbers(np.rot90(frames, k=-turns, axes=(1, 2))) == indices.tolist()


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_variable_frame_rate(tmp_path, suffix):
    # 300 frames 40 or 120 ms apart (irregular, as phones record in dim light). Frame i is the
    # i-th frame shown, also when the reader seeks: numbering by pts * fps would drift.
    steps = [120 if i % 3 == 0 else 40 for i in range(299)]
    path = write_video(tmp_path / f"vfr.{suffix}", 300, pts_ms=np.cumsum([0] + steps).tolist(),
                       options={"x264-params": "keyint=30:scenecut=0"})
    indices = sample_frame_indices(count_frames(path, exact=True), 16)
    frames, report = read_video_frames(path, indices, seek_threshold=16)
    assert report.seeked
    assert frame_numbers(frames) == [i % 512 for i in indices.tolist()]
    wanted = [100, 150, 200, 299]
    frames, report = read_video_frames(path, wanted)
    assert report.seeked and frame_numbers(frames) == wanted


# --------------------------------------------------------------------------- codecs and pixel formats


CODECS = {
    "HEVC in .mov": ("libx265", "yuv420p", "mov", "hevc"),
    "VP9 in .webm": ("libvpx-vp9", "yuv420p", "webm", "vp9"),
    "MJPEG in .avi": ("mjpeg", "yuvj420p", "avi", "mjpeg"),
    "grayscale FFV1 in .mkv": ("ffv1", "gray", "mkv", "ffv1"),
    "grayscale HEVC in .mp4": ("libx265", "gray", "mp4", "hevc"),
    "10-bit H.264 in .mp4": ("libx264", "yuv420p10le", "mp4", "h264"),
    "10-bit HEVC in .mov": ("libx265", "yuv420p10le", "mov", "hevc"),
    "10-bit VP9 in .webm": ("libvpx-vp9", "yuv420p10le", "webm", "vp9"),
}


@pytest.mark.parametrize("case", list(CODECS))
def test_codec_and_pixel_format_decode_to_rgb(tmp_path, case):
    codec, pix_fmt, suffix, decoder = CODECS[case]
    # 64x64: this build's libx265 corrupts the heap on frames smaller than its 64-pixel blocks.
    path = write_video(tmp_path / f"clip.{suffix}", 20, codec, pix_fmt, height=64, width=64)
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        assert (context.name, context.pix_fmt) == (decoder, pix_fmt)
    frames, indices = read_clip(path, num_frames=8)
    assert_rgb_frames(frames, 8, 64, 64)
    assert frame_numbers(frames) == indices.tolist()
    if pix_fmt == "gray":
        assert (frames[..., 0] == frames[..., 1]).all() and (frames[..., 1] == frames[..., 2]).all()


# --------------------------------------------------------------------------- quality flags


def test_duration_from_container_and_too_short_flag(tmp_path):
    path = write_video(tmp_path / "short.mp4", 50, rate=25)  # 2 s
    assert video_duration(path) == pytest.approx(2.0, abs=0.05)
    frames, _ = read_clip(path, num_frames=4)
    quality = video_quality(path, frames)
    assert quality["too_short"] and "too_short" in quality["flags"]
    assert quality["duration_seconds"] < MIN_DURATION_SECONDS
    webm = write_video(tmp_path / "long.webm", 60, "libvpx-vp9", rate=10)  # 6 s, duration in the container only
    assert video_duration(webm) == pytest.approx(6.0, abs=0.15)
    assert not video_quality(webm, read_clip(webm, num_frames=4)[0])["too_short"]
    with pytest.raises(VideoReadError, match="is a folder of frames"):
        video_duration(tmp_path)


def test_dark_bright_and_blurry_flags():
    rng = np.random.default_rng(0)
    sharp = rng.integers(60, 200, size=(4, 120, 160, 3), dtype=np.uint8)
    good = video_quality("good.mp4", sharp, duration_seconds=6.0)
    assert good["flags"] == [] and 100 < good["brightness"] < 160
    dark = video_quality("dark.mp4", (sharp // 8).astype(np.uint8), duration_seconds=6.0)
    assert dark["too_dark"] and not dark["too_bright"]
    bright = video_quality("bright.mp4", (255 - sharp // 10).astype(np.uint8), duration_seconds=6.0)
    assert bright["too_bright"] and not bright["too_dark"]
    # Smoothed with a wide box filter: no edges left.
    kernel = np.ones(9) / 9
    smooth = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, sharp.astype(float))
    smooth = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 2, smooth).astype(np.uint8)
    blurred = video_quality("blurred.mp4", smooth[:, 8:-8, 8:-8], duration_seconds=6.0)
    assert blurred["blurry"] and blurred["flags"] == ["blurry"]
    assert blur_score(smooth[:, 8:-8, 8:-8]) < BLURRY_LAPLACIAN_VARIANCE < blur_score(sharp)


def test_face_flags_from_the_track_report(tmp_path):
    from dfer_pd.faces.tracking import FaceTrackReport

    def report(fraction: float, faces: int) -> FaceTrackReport:
        empty = np.zeros((4, 4))
        return FaceTrackReport(np.arange(4), empty, empty, np.ones(4, bool), np.ones(4, bool), fraction, faces, (8, 8))

    frames = np.random.default_rng(0).integers(60, 200, size=(4, 64, 64, 3), dtype=np.uint8)
    few = video_quality("v.mp4", frames, report(0.6, 1), duration_seconds=6.0)
    assert few["few_faces"] and few["face_fraction"] == 0.6 and few["flags"] == ["few_faces"]
    two = video_quality("v.mp4", frames, report(1.0, 2), duration_seconds=6.0)
    assert two["flags"] == ["multiple_faces"]
    unknown = video_quality("v.mp4", frames, None, duration_seconds=6.0)
    assert unknown["face_fraction"] is None and not unknown["few_faces"]
    with pytest.raises(ValueError, match=r"v\.mp4: frames must be"):
        video_quality("v.mp4", frames[0], duration_seconds=6.0)


# --------------------------------------------------------------------------- decode integrity


def faststart_cut(folder: Path, keep: float, num_frames: int = 60) -> Path:
    """A partly copied phone file: the index (moov) at the front, only the first ``keep`` of the bytes."""
    full = write_video(folder / "full_fast.mp4", num_frames, container_options={"movflags": "faststart"})
    data = full.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    path = folder / f"cut_{int(keep * 100)}.mp4"
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def test_truncated_video_is_flagged_with_its_decoded_share_and_refused_below_the_limit(tmp_path):
    from dfer_pd.common.video import TruncatedVideoError, check_decoded_share, read_sampled_clip
    from dfer_pd.stage1.quality_policy import QualityPolicy

    path = faststart_cut(tmp_path, 0.7, 120)  # the first (key) frame holds much of the bytes
    clip = read_sampled_clip(path, 16)
    assert clip.truncated and clip.clip_length == 120
    decoded = clip.decode.last_index + 1
    assert clip.decoded_share == pytest.approx(decoded / 120) and 0.2 < clip.decoded_share < 0.7
    assert clip.summary()["truncated"] is True
    with pytest.raises(TruncatedVideoError, match=rf"cut_70\.mp4: truncated: only {clip.decoded_share:.0%} of its 120 frames"):
        check_decoded_share(path, clip, 0.9)
    check_decoded_share(path, clip, 0.2)  # the limit is configurable
    whole = read_sampled_clip(tmp_path / "full_fast.mp4", 16)
    assert not whole.truncated and whole.decoded_share == 1.0
    check_decoded_share(tmp_path / "full_fast.mp4", whole, 1.0)
    quality = video_quality(path, clip.frames, duration_seconds=6.0, decode=clip.summary(), policy=QualityPolicy(0.9))
    assert quality["truncated"] and quality["truncated_beyond_limit"] and "truncated" in quality["reasons"][0]
    lenient = video_quality(path, clip.frames, duration_seconds=6.0, decode=clip.summary(), policy=QualityPolicy(0.2))
    assert lenient["truncated"] and not lenient["reasons"]


def test_variable_frame_rate_video_is_sampled_by_time(tmp_path):
    from dfer_pd.common.video import read_sampled_clip

    # The first second at 30 fps (30 frames), then 3 s at 5 fps (15 frames), as phones do when the light drops.
    pts_ms = [round(1000 * i / 30) for i in range(30)] + [1000 + 200 * i for i in range(15)]
    path = write_video(tmp_path / "vfr.mp4", 45, pts_ms=pts_ms)
    clip = read_sampled_clip(path, 16)
    assert clip.sampled_by_time and frame_numbers(clip.frames) == clip.indices.tolist()
    times = np.asarray(pts_ms)[clip.indices] / 1000
    np.testing.assert_allclose(clip.times, times)
    assert (times < 1.0).sum() == 4  # one second of four: 4 of 16 frames (by frame number it would be 11)
    assert (sample_frame_indices(45, 16) < 30).sum() == 11
    np.testing.assert_allclose(np.diff(times).max(), 0.4, atol=0.21)  # evenly spread in time
    constant = read_sampled_clip(write_video(tmp_path / "cfr.mp4", 45), 16)
    assert not constant.sampled_by_time and constant.indices.tolist() == sample_frame_indices(45, 16).tolist()
