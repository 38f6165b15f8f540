"""Read chosen frames from a clip, stored either as a folder of images or as a video file.

Frame folders (DFEW's ``clip_224x224/<id>/<id>_00001.jpg`` or ``clip_224x224_16f/<id>/1.jpg``)
are ordered by the last integer in each file name, and only the requested images are opened.

Video files (mp4, mov, avi, webm, mkv, anything FFmpeg reads) are decoded with PyAV only as
far as the last requested frame. When the first requested frame lies far into the clip the
reader seeks to the keyframe before it and numbers the decoded frames by their timestamps
(``round((pts - start_time) * time_base * fps)``, exact for constant frame rate); when the
timestamps are missing or the seek lands past the target it decodes from the start instead.

A clip that decodes fewer frames than its container claims (a truncated file, a container that
over-reports) does not fail: requested indices past the last decoded frame get that last
frame, and :class:`DecodeReport` says so. Decoding stops at the first corrupt packet once at
least one frame has decoded, for the same reason. Frames come back as RGB ``uint8`` arrays
turned upright according to the stream's rotation metadata (phone recordings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dfer_pd.data.sampling import SamplingMode, sample_frame_indices

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
# Seek only when the first requested frame is at least this far in; below it decoding from the
# start costs less than a seek (the keyframe before the target is usually frame 0 anyway).
DEFAULT_SEEK_THRESHOLD = 64

_LAST_INTEGER = re.compile(r"(\d+)(?!.*\d)")


class VideoReadError(ValueError):
    """A clip that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class DecodeReport:
    """What decoding a video cost and found, for tests and diagnostics.

    ``frames_decoded`` counts frames the decoder produced (after the seek, if any);
    ``last_index`` is the index of the last of them; ``clamped`` is true when requested
    indices lay past the last decodable frame and were given that frame instead;
    ``decode_error`` holds the message of a corrupt packet that ended decoding early.
    """

    frames_decoded: int
    last_index: int
    seeked: bool
    clamped: bool
    decode_error: str | None = None


# --------------------------------------------------------------------------- helpers


def _existing_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoReadError(f"{path}: no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoReadError(f"{path}: file is empty (0 bytes)")
    return path


def _check_indices(path: Path, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(indices)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{path}: indices must be a non-empty 1-D sequence, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{path}: indices must be integers, got dtype {array.dtype}")
    if array.min() < 0:
        raise ValueError(f"{path}: frame indices must be >= 0, got {int(array.min())}")
    return array.astype(np.int64)


def rotate_to_display(frame: np.ndarray, degrees: float) -> np.ndarray:
    """Turn a decoded ``(H, W, C)`` frame upright: rotate it ``degrees`` counter-clockwise.

    ``degrees`` follows FFmpeg's display matrix (``VideoFrame.rotation``): a phone clip tagged
    ``rotate=90`` reads back as -90 and is turned 90 degrees clockwise. Angles are rounded to
    the nearest quarter turn.
    """
    quarter_turns = int(round(degrees / 90.0)) % 4
    if quarter_turns == 0:
        return frame
    return np.ascontiguousarray(np.rot90(frame, k=quarter_turns, axes=(0, 1)))


# --------------------------------------------------------------------------- frame folders


def _frame_sort_key(path: Path) -> tuple[int, int, str]:
    match = _LAST_INTEGER.search(path.stem)
    if match is None:
        return (1, 0, path.name)
    return (0, int(match.group(1)), path.name)


def list_frame_files(folder: str | Path) -> list[Path]:
    """Images of a frame folder in frame order: by the last integer in the file name.

    ``2.jpg`` comes before ``10.jpg``; names without a number follow, sorted by name.
    Hidden files (``.DS_Store``, macOS ``._1.jpg`` copies) are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoReadError(f"{folder}: not a folder of frames")
    images = [
        entry
        for entry in folder.iterdir()
        if entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
    ]
    return sorted(images, key=_frame_sort_key)


def _folder_frame_files(folder: Path) -> list[Path]:
    files = list_frame_files(folder)
    if not files:
        raise VideoReadError(
            f"{folder}: frame folder has no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    return files


def _load_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise VideoReadError(f"{path}: cannot read image ({error})") from error


def _read_folder_frames(folder: Path, indices: np.ndarray) -> np.ndarray:
    files = _folder_frame_files(folder)
    if indices.max() >= len(files):
        raise ValueError(
            f"{folder}: frame index {int(indices.max())} is past the last frame "
            f"(the folder has {len(files)} images)"
        )
    loaded = {int(i): _load_image(files[i]) for i in np.unique(indices)}
    return _stack_frames(folder, [loaded[int(i)] for i in indices])


def _stack_frames(path: Path, frames: list[np.ndarray]) -> np.ndarray:
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        raise VideoReadError(f"{path}: frames differ in size {sorted(shapes)}")
    return np.stack(frames)


# --------------------------------------------------------------------------- video files


def _open_video(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise VideoReadError(f"{path}: not a readable video file ({error})") from error


def _video_stream(path: Path, container: av.container.InputContainer) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(sorted({stream.type for stream in container.streams})) or "none"
        raise VideoReadError(f"{path}: has no video stream (streams: {kinds})")
    return container.streams.video[0]


def _count_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    # Flush packets at the end of demuxing carry no data.
    return sum(1 for packet in container.demux(stream) if packet.size > 0)


def count_frames(path: str | Path, exact: bool = False) -> int:
    """Number of frames in a clip: images in a frame folder, or frames of a video.

    For a video, the container's frame count is used when it has one; otherwise (mkv, webm)
    or with ``exact=True`` the video packets are counted by demuxing, without decoding.
    Raises :class:`VideoReadError` for a clip with no frames.
    """
    path = _existing_path(path)
    if path.is_dir():
        return len(_folder_frame_files(path))
    try:
        with _open_video(path) as container:
            stream = _video_stream(path, container)
            num_frames = int(stream.frames or 0)
            if exact or num_frames <= 0:
                num_frames = _count_packets(container, stream)
    except av.error.FFmpegError as error:
        raise VideoReadError(f"{path}: cannot demux video ({error})") from error
    if num_frames == 0:
        raise VideoReadError(f"{path}: video stream has no frames")
    return num_frames


def _frame_rotation(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> float:
    """Counter-clockwise display rotation of a decoded frame, in degrees."""
    rotation = getattr(frame, "rotation", 0) or 0  # display matrix, PyAV >= 14
    if rotation:
        return float(rotation)
    tag = stream.metadata.get("rotate")  # old FFmpeg tag, clockwise degrees
    try:
        return -float(tag) if tag else 0.0
    except ValueError:
        return 0.0


def _to_rgb(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> np.ndarray:
    return rotate_to_display(frame.to_ndarray(format="rgb24"), _frame_rotation(frame, stream))


class _SeekMissed(Exception):
    """The seek cannot be trusted here; decode from the start instead."""


def _seek_to(container, stream, first_index: int) -> tuple[int, Fraction] | None:
    """Seek to the keyframe before ``first_index``; return (start pts, frames per pts tick)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or not stream.time_base:
        return None
    start_pts = stream.start_time or 0
    frames_per_tick = Fraction(rate) * Fraction(stream.time_base)
    try:
        container.seek(start_pts + int(first_index / frames_per_tick), stream=stream, backward=True)
    except av.error.FFmpegError:
        return None
    return start_pts, frames_per_tick


def _indexed_frames(
    container, stream, first_index: int, seek: bool
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Decoded frames with their frame index: counted from the start, or from pts after a seek."""
    if not seek:
        for index, frame in enumerate(container.decode(stream)):
            yield index, frame
        return
    timing = _seek_to(container, stream, first_index)
    if timing is None:
        raise _SeekMissed
    start_pts, frames_per_tick = timing
    first = True
    for frame in container.decode(stream):
        if frame.pts is None:
            raise _SeekMissed
        index = round((frame.pts - start_pts) * frames_per_tick)
        if first and index > first_index:
            raise _SeekMissed  # landed after the target: no keyframe before it was found
        first = False
        yield index, frame
    if first:
        raise _SeekMissed  # nothing decoded after the seek (past the end?)


def _decode_video(
    path: Path, indices: np.ndarray, threads: bool, seek: bool
) -> tuple[np.ndarray, DecodeReport]:
    wanted = np.unique(indices)  # sorted
    pending = 0  # position in `wanted` of the next frame still needed
    frames: dict[int, np.ndarray] = {}
    decoded = 0
    last_index = -1
    last_frame: av.VideoFrame | None = None
    decode_error: str | None = None
    with _open_video(path) as container:
        stream = _video_stream(path, container)
        if threads:
            stream.thread_type = "AUTO"
        try:
            for index, frame in _indexed_frames(container, stream, int(wanted[0]), seek):
                decoded += 1
                last_index, last_frame = index, frame
                if index < wanted[pending]:
                    continue
                # A pts gap (variable frame rate) may skip an index: the next frame stands in.
                array = _to_rgb(frame, stream)
                while pending < len(wanted) and wanted[pending] <= index:
                    frames[int(wanted[pending])] = array
                    pending += 1
                if pending == len(wanted):
                    break
        except av.error.FFmpegError as error:
            if decoded == 0:
                raise VideoReadError(f"{path}: cannot decode video ({error})") from error
            decode_error = str(error)
        if last_frame is None:
            raise VideoReadError(f"{path}: video stream has no frames")
        clamped = pending < len(wanted)
        if clamped:
            array = _to_rgb(last_frame, stream)
            for index in wanted[pending:]:
                frames[int(index)] = array
    report = DecodeReport(decoded, last_index, seek, clamped, decode_error)
    return _stack_frames(path, [frames[int(i)] for i in indices]), report


def read_video_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray,
    threads: bool = False,
    seek_threshold: int = DEFAULT_SEEK_THRESHOLD,
) -> tuple[np.ndarray, DecodeReport]:
    """Frames ``indices`` of a video file as ``(len(indices), H, W, 3)`` RGB uint8, and a report.

    ``threads=True`` lets FFmpeg decode with several threads (good in a single process; inside
    DataLoader workers one thread each is faster).
    """
    path = _existing_path(path)
    if path.is_dir():
        raise VideoReadError(f"{path}: is a folder, not a video file")
    indices = _check_indices(path, indices)
    if int(indices.min()) >= seek_threshold:
        try:
            return _decode_video(path, indices, threads, seek=True)
        except _SeekMissed:
            pass
    return _decode_video(path, indices, threads, seek=False)


def read_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray,
    threads: bool = False,
) -> np.ndarray:
    """Frames ``indices`` of a clip (folder or video) as ``(len(indices), H, W, 3)`` RGB uint8.

    Repeated indices return the frame once per request. In a folder every index must exist;
    in a video, indices past the last decodable frame get that frame (see the module notes).
    """
    path = _existing_path(path)
    if path.is_dir():
        return _read_folder_frames(path, _check_indices(path, indices))
    return read_video_frames(path, indices, threads=threads)[0]


def read_clip(
    path: str | Path,
    num_frames: int = 16,
    mode: SamplingMode = "eval",
    rng: np.random.Generator | None = None,
    threads: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``num_frames`` indices with the segment samplers and read them: (frames, indices)."""
    indices = sample_frame_indices(count_frames(path), num_frames, mode=mode, rng=rng)
    return read_frames(path, indices, threads=threads), indices
