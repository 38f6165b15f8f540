"""Reading frames from frame folders and video files: which frame comes back, and clear errors."""

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from helpers import FRAME_HEIGHT, FRAME_WIDTH, frame_numbers, numbered_frame, write_video
from dfer_pd.common.frame_cache import FrameFolderCache
from dfer_pd.common.video import (
    VideoReadError,
    count_frames,
    list_frame_files,
    read_clip,
    read_frames,
    read_video_frames,
    rotate_to_display,
)

@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "mp4": write_video(folder / "clip.mp4", 40),
        "long": write_video(folder / "long.mp4", 300, keyint=30),
        "avi": write_video(folder / "clip.avi", 20, codec="mjpeg"),
        "mkv": write_video(folder / "clip.mkv", 20),
    }


# --------------------------------------------------------------------------- frame folders


def write_frame_folder(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for number, name in enumerate(names):
        Image.fromarray(numbered_frame(number)).save(folder / name, quality=95)
    return folder


def test_frame_folder_cache_reads_what_the_files_hold_within_its_budget(tmp_path, monkeypatch):
    import dfer_pd.common.video as video

    folders = [write_frame_folder(tmp_path / f"{k:05d}", [f"{i}.jpg" for i in range(1, 13)]) for k in range(3)]
    one_frame = numbered_frame(0).nbytes
    cache = FrameFolderCache(max_mb=20 * one_frame / 2**20)  # room for 20 of the 36 frames
    decoded = []
    original = video._load_image
    monkeypatch.setattr(video, "_load_image", lambda path: decoded.append(path) or original(path))
    for mode, seed in (("train", 0), ("train", 1), ("eval", None)):
        for folder in folders:
            rng = None if seed is None else np.random.default_rng(seed)
            plain, plain_idx = read_clip(folder, 6, mode=mode, rng=None if seed is None else np.random.default_rng(seed))
            cached, cached_idx = read_clip(folder, 6, mode=mode, rng=rng, cache=cache)
            np.testing.assert_array_equal(cached_idx, plain_idx)  # the same sampling
            np.testing.assert_array_equal(cached, plain)  # the same pixels
            assert cached.flags.writeable  # a copy: the cached images cannot be changed through it
            assert cache.bytes <= cache.max_bytes
    decoded.clear()
    read_clip(folders[2], 6, mode="eval", cache=cache)  # the last clip read is still held: nothing decoded
    assert decoded == []
    assert len(cache._images) == 20 and cache.bytes == 20 * one_frame


def test_frame_files_sort_by_last_integer_not_text(tmp_path):
    folder = write_frame_folder(tmp_path / "00007", [f"{i}.jpg" for i in range(1, 17)])
    (folder / ".DS_Store").write_bytes(b"x")
    (folder / "._3.jpg").write_bytes(b"x")  # macOS resource fork, not an image
    (folder / "notes.txt").write_text("x")
    assert [p.name for p in list_frame_files(folder)] == [f"{i}.jpg" for i in range(1, 17)]


def test_frame_files_dfew_padded_names(tmp_path):
    names = [f"00042_{i:05d}.jpg" for i in (10, 2, 1, 100)]
    folder = tmp_path / "00042"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"")
    assert [p.name for p in list_frame_files(folder)] == [
        "00042_00001.jpg",
        "00042_00002.jpg",
        "00042_00010.jpg",
        "00042_00100.jpg",
    ]


def test_folder_read_returns_requested_frames_in_order(tmp_path):
    # Written as 1.jpg..12.jpg: frame k (0-based) shows number k.
    folder = write_frame_folder(tmp_path / "c", [f"{i}.png" for i in range(1, 13)])
    assert count_frames(folder) == 12
    frames = read_frames(folder, [11, 0, 10, 10, 2])
    assert frames.shape == (5, FRAME_HEIGHT, FRAME_WIDTH, 3) and frames.dtype == np.uint8
    assert frame_numbers(frames) == [11, 0, 10, 10, 2]


def test_folder_read_clip_short_clip_repeats_last(tmp_path):
    folder = write_frame_folder(tmp_path / "c", [f"{i}.jpg" for i in range(1, 11)])
    frames, indices = read_clip(folder, num_frames=16, mode="eval")
    assert indices.tolist() == list(range(10)) + [9] * 6
    assert frame_numbers(frames) == indices.tolist()


def test_folder_errors_name_the_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoReadError, match="empty.*no images"):
        count_frames(empty)
    with pytest.raises(VideoReadError, match="no images"):
        read_frames(empty, [0])
    folder = write_frame_folder(tmp_path / "c", ["1.jpg", "2.jpg"])
    with pytest.raises(ValueError, match="index 5 is past the last frame.*2 images"):
        read_frames(folder, [0, 5])
    (folder / "3.jpg").write_text("not a jpeg")
    with pytest.raises(VideoReadError, match=r"3\.jpg: cannot read image"):
        read_frames(folder, [2])


# --------------------------------------------------------------------------- video files


@pytest.mark.parametrize("kind, length", [("mp4", 40), ("avi", 20), ("mkv", 20)])
def test_count_frames_video(videos, kind, length):
    # mkv stores no frame count: it is counted by demuxing.
    assert count_frames(videos[kind]) == length
    assert count_frames(videos[kind], exact=True) == length


@pytest.mark.parametrize("kind", ["mp4", "avi", "mkv"])
def test_video_read_returns_exact_frames(videos, kind):
    wanted = [0, 3, 3, 7, 19, 12]
    frames = read_frames(videos[kind], wanted)
    assert frames.shape == (6, FRAME_HEIGHT, FRAME_WIDTH, 3) and frames.dtype == np.uint8
    assert frame_numbers(frames) == wanted


def test_video_decodes_only_up_to_last_needed_frame(videos):
    frames, report = read_video_frames(videos["mp4"], [1, 5])
    assert frame_numbers(frames) == [1, 5]
    assert not report.seeked and not report.clamped
    assert report.last_index == 5
    assert report.frames_decoded == 6  # of 40


def test_video_seek_far_in_returns_exact_frames(videos):
    frames, report = read_video_frames(videos["long"], [260, 250, 250, 299])
    assert frame_numbers(frames) == [260, 250, 250, 299]
    assert report.seeked
    # Keyframes every 30 frames (with B-frames between): decoding starts at 240, not at 0.
    assert report.frames_decoded == 300 - 240


def test_video_seek_and_sequential_agree(videos):
    wanted = [70, 89, 90, 91, 150]
    seeked, report_seek = read_video_frames(videos["long"], wanted, seek_threshold=64)
    sequential, report_seq = read_video_frames(videos["long"], wanted, seek_threshold=10_000)
    assert report_seek.seeked and not report_seq.seeked
    assert (report_seek.frames_decoded, report_seq.frames_decoded) == (150 - 60 + 1, 151)
    assert frame_numbers(seeked) == frame_numbers(sequential) == wanted
    np.testing.assert_array_equal(seeked, sequential)


def test_video_threads_give_same_frames(videos):
    wanted = [0, 17, 39]
    np.testing.assert_array_equal(
        read_frames(videos["mp4"], wanted, threads=True), read_frames(videos["mp4"], wanted)
    )


def test_indices_past_the_end_get_last_decoded_frame(videos):
    frames, report = read_video_frames(videos["mp4"], [38, 45, 100])
    assert frame_numbers(frames) == [38, 39, 39]
    assert report.clamped and report.last_index == 39


def test_truncated_video_clamps_to_frames_that_decode(tmp_path):
    path = write_video(tmp_path / "full.avi", 40, codec="mjpeg")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 2])
    assert count_frames(truncated) == 40  # the header still claims 40
    frames, report = read_video_frames(truncated, [0, 10, 39])
    assert report.clamped and 0 < report.frames_decoded < 40
    assert frame_numbers(frames)[:2] == [0, 10]
    assert frame_numbers(frames)[2] == report.last_index < 39


def test_read_clip_video_eval_and_train(videos):
    frames, indices = read_clip(videos["mp4"], num_frames=16, mode="eval")
    assert indices.tolist() == [(2 * k + 1) * 40 // 32 for k in range(16)]
    assert frame_numbers(frames) == indices.tolist()
    first, first_indices = read_clip(videos["mp4"], 16, mode="train", rng=np.random.default_rng(3))
    again, again_indices = read_clip(videos["mp4"], 16, mode="train", rng=np.random.default_rng(3))
    np.testing.assert_array_equal(first_indices, again_indices)
    np.testing.assert_array_equal(first, again)
    assert frame_numbers(first) == first_indices.tolist()


@pytest.mark.skipif(
    not hasattr(av.video.stream.VideoStream, "set_display_rotation"),
    reason="this PyAV cannot write a display matrix; rotate_to_display is tested on arrays",
)
def test_rotation_metadata_turns_frames_upright(tmp_path):
    # Frames stored 48 high and 64 wide, tagged with a 90 degree counter-clockwise display rotation.
    path = write_video(tmp_path / "rotated.mp4", 6, rotation=90)
    with av.open(str(path)) as container:
        assert next(container.decode(video=0)).rotation == 90
    frames = read_frames(path, [0, 4])
    assert frames.shape == (2, FRAME_WIDTH, FRAME_HEIGHT, 3)
    expected = np.rot90(numbered_frame(4), k=1)
    assert np.abs(frames[1].astype(int) - expected.astype(int)).max() < 10
    # Band order survives the turn: the top band is now on the left.
    assert frame_numbers(np.rot90(frames, k=-1, axes=(1, 2))) == [0, 4]


def test_rotate_to_display_directions():
    frame = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)  # [[0 1 2], [3 4 5]]
    assert rotate_to_display(frame, 0) is frame
    # 90 counter-clockwise: the right column becomes the top row.
    assert rotate_to_display(frame, 90)[..., 0].tolist() == [[2, 5], [1, 4], [0, 3]]
    # -90 (a phone's rotate=90 tag): clockwise, the left column becomes the top row reversed.
    assert rotate_to_display(frame, -90)[..., 0].tolist() == [[3, 0], [4, 1], [5, 2]]
    assert rotate_to_display(frame, 180)[..., 0].tolist() == [[5, 4, 3], [2, 1, 0]]
    assert rotate_to_display(frame, -180)[..., 0].tolist() == [[5, 4, 3], [2, 1, 0]]
    assert rotate_to_display(frame, 89.6)[..., 0].tolist() == [[2, 5], [1, 4], [0, 3]]


# --------------------------------------------------------------------------- video errors


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    calls = (lambda: count_frames(missing), lambda: read_frames(missing, [0]), lambda: read_clip(missing, 16))
    for call in calls:
        with pytest.raises(VideoReadError, match=r"nope\.mp4: no such file"):
            call()


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero.mp4"
    path.touch()
    with pytest.raises(VideoReadError, match=r"zero\.mp4: file is empty"):
        count_frames(path)
    with pytest.raises(VideoReadError, match="file is empty"):
        read_frames(path, [0])


def test_text_renamed_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoReadError, match=r"notes\.mp4: not a readable video file"):
        count_frames(path)
    with pytest.raises(VideoReadError, match="not a readable video file"):
        read_clip(path, 16)


def test_audio_only_file(tmp_path):
    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoReadError, match=r"voice\.m4a: has no video stream \(streams: audio\)"):
        count_frames(path)
    with pytest.raises(VideoReadError, match="has no video stream"):
        read_frames(path, [0])


def test_video_without_frames(tmp_path):
    path = tmp_path / "blank.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuvj420p"
        container.start_encoding()
    with pytest.raises(VideoReadError, match=r"blank\.avi: video stream has no frames"):
        count_frames(path)
    with pytest.raises(VideoReadError, match="has no frames"):
        read_frames(path, [0])


def test_bad_indices(videos):
    with pytest.raises(ValueError, match=">= 0"):
        read_frames(videos["mp4"], [-1, 2])
    with pytest.raises(ValueError, match="non-empty"):
        read_frames(videos["mp4"], [])
    with pytest.raises(ValueError, match="integers"):
        read_frames(videos["mp4"], [0.5])


def test_legacy_rotate_tag_is_clockwise():
    # Older FFmpeg builds expose a phone's orientation only as the stream tag rotate=90 (clockwise).
    from types import SimpleNamespace

    from dfer_pd.common.video import _frame_rotation

    stream = SimpleNamespace(metadata={"rotate": "90"})
    assert _frame_rotation(SimpleNamespace(rotation=0), stream) == -90
    assert _frame_rotation(SimpleNamespace(rotation=180), stream) == 180  # display matrix wins
    assert _frame_rotation(SimpleNamespace(), SimpleNamespace(metadata={})) == 0
