"""Read chosen frames from a clip, stored either as a folder of images or as a video file.

Frame folders (DFEW's ``clip_224x224/<id>/<id>_00001.jpg`` or ``clip_224x224_16f/<id>/1.jpg``)
are ordered by the last integer in each file name, and only the requested images are opened.

Video files (mp4, mov, avi, webm, mkv, anything FFmpeg reads) are decoded with PyAV only as
far as the last requested frame. When the first requested frame lies far into the clip, or
requested frames lie far apart (a few frames sampled from a long phone video), the reader
skips the stretch between by seeking to the keyframe before the next requested frame. To
number frames after a seek it first lists every packet's timestamp (one pass over the packets,
no decoding): frame ``i`` is the one with the ``i``-th smallest timestamp, which stays exact for
variable frame rates (phones), where ``pts * fps`` does not. When the timestamps are missing or
repeated, or a seek lands past its target, it decodes from the start instead.

A clip that decodes fewer frames than its container claims (a truncated file, a container that
over-reports) does not fail: requested indices past the last decoded frame get that last
frame, and :class:`DecodeReport` says so. Decoding stops at the first corrupt packet once at
least one frame has decoded, for the same reason. :func:`read_sampled_clip` turns that into
:attr:`ClipRead.truncated` with the share of the clip that decoded, and
:func:`check_decoded_share` refuses a clip below a chosen share: a phone file copied only in part
loses the end of the expression, which looks exactly like hypomimia.

Clips are sampled by frame number when their frames are evenly spaced in time, and by time when
they are not (variable-frame-rate phone recordings, where frames bunch up in bright scenes).
Frames come back as RGB ``uint8`` arrays turned upright according to the stream's rotation
metadata (phone recordings).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generator, Sequence

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dfer_pd.common.sampling import SamplingMode, sample_frame_indices, sample_indices_by_time

if TYPE_CHECKING:
    from dfer_pd.common.frame_cache import FrameFolderCache

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
# Containers looked for by name (DFEW originals, cohort folders); anything FFmpeg reads still opens.
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v")
# Seek only when the first requested frame is at least this far in; below it decoding from the
# start costs less than a seek (the keyframe before the target is usually frame 0 anyway).
DEFAULT_SEEK_THRESHOLD = 64

# A clip is refused (cohorts, diagnose) when less than this share of its frames decodes.
# Frame durations further than this share from their median make a video variable-frame-rate
# (29.97 fps in a millisecond time base alternates 33 and 34 ms: 3%, still constant).
VFR_TOLERANCE = 0.1

_LAST_INTEGER = re.compile(r"(\d+)(?!.*\d)")


def ffmpeg_reason(error: Exception) -> str:
    """FFmpeg's words for what went wrong, without the errno number and file name PyAV adds to them."""
    reason = getattr(error, "strerror", None) or str(error)
    return str(reason).strip().rstrip(".") or type(error).__name__


class VideoReadError(ValueError):
    """A clip that cannot be read; the message names the file and the problem."""


class TruncatedVideoError(VideoReadError):
    """Less of a clip decodes than the chosen share; the message names the file and the share."""


@dataclass(frozen=True)
class DecodeReport:
    """What decoding a video cost and found, for tests and diagnostics.

    ``frames_decoded`` counts frames the decoder produced (after seeks, if any);
    ``last_index`` is the index of the last of them; ``seeked`` is true when decoding skipped
    frames by seeking, ``seeks`` says how many times; ``clamped`` is true when requested
    indices lay past the last decodable frame and were given that frame instead;
    ``decode_error`` holds the message of a corrupt packet that ended decoding early.
    """

    frames_decoded: int
    last_index: int
    seeked: bool
    clamped: bool
    decode_error: str | None = None
    seeks: int = 0


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


def _frame_sort_key(name: str) -> tuple[int, int, str]:
    match = _LAST_INTEGER.search(os.path.splitext(name)[0])
    if match is None:
        return (1, 0, name)
    return (0, int(match.group(1)), name)


def _frame_names(folder: Path) -> list[str]:
    """File names of a frame folder's images in frame order. os.scandir knows each entry's type without
    a stat call, and names stay strings: training reads a folder per clip per epoch."""
    if not folder.is_dir():
        raise VideoReadError(f"{folder}: not a folder of frames")
    with os.scandir(folder) as entries:
        names = [entry.name for entry in entries
                 if os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and not entry.name.startswith(".")
                 and entry.is_file()]
    return sorted(names, key=_frame_sort_key)


def list_frame_files(folder: str | Path) -> list[Path]:
    """Images of a frame folder in frame order: by the last integer in the file name.

    ``2.jpg`` comes before ``10.jpg``; names without a number follow, sorted by name.
    Hidden files (``.DS_Store``, macOS ``._1.jpg`` copies) are skipped.
    """
    folder = Path(folder)
    return [folder / name for name in _frame_names(folder)]


def _folder_frame_names(folder: Path) -> list[str]:
    names = _frame_names(folder)
    if not names:
        raise VideoReadError(
            f"{folder}: frame folder has no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    return names


def _load_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise VideoReadError(f"{path}: cannot read image ({error})") from error


def _read_folder_frames(folder: Path, indices: np.ndarray, files: list[str] | None = None,
                        cache: FrameFolderCache | None = None) -> np.ndarray:
    files = _folder_frame_names(folder) if files is None else files
    if indices.max() >= len(files):
        raise ValueError(
            f"{folder}: frame index {int(indices.max())} is past the last frame "
            f"(the folder has {len(files)} images)"
        )
    load = _load_image if cache is None else cache.image
    loaded = {int(i): load(folder / files[i]) for i in np.unique(indices)}
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
        raise VideoReadError(f"{path}: not a readable video file ({ffmpeg_reason(error)})") from error


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
        return len(_folder_frame_names(path))
    try:
        with _open_video(path) as container:
            stream = _video_stream(path, container)
            num_frames = int(stream.frames or 0)
            if exact or num_frames <= 0:
                num_frames = _count_packets(container, stream)
    except av.error.FFmpegError as error:
        raise VideoReadError(f"{path}: cannot demux video ({ffmpeg_reason(error)})") from error
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


@dataclass(frozen=True)
class _FrameTable:
    """A video's frames in display order: their timestamps, and the positions of its keyframes."""

    pts: np.ndarray
    keyframes: np.ndarray
    time_base: float = 0.0  # seconds per pts unit (0 when unknown)

    def seconds(self) -> np.ndarray:
        """Display times of the frames in seconds from the first one."""
        return (self.pts - self.pts[0]) * self.time_base

    def variable_rate(self) -> bool:
        """Whether frame durations differ by more than :data:`VFR_TOLERANCE` of their median."""
        if len(self.pts) < 3 or self.time_base <= 0:
            return False
        durations = np.diff(self.pts).astype(np.float64)
        median = float(np.median(durations))
        return bool(median > 0 and np.abs(durations - median).max() > VFR_TOLERANCE * median)

    def keyframe_before(self, index: int) -> int:
        """Position of the last keyframe at or before frame ``index`` (0 when none is known)."""
        index = min(index, len(self.pts) - 1)
        where = np.searchsorted(self.keyframes, index, side="right") - 1
        return int(self.keyframes[where]) if where >= 0 else 0

    def index_of(self, pts: int | None) -> int:
        """Display position of the frame with timestamp ``pts``; a frame not in the table ends the seek."""
        if pts is None:
            raise _SeekMissed
        position = int(np.searchsorted(self.pts, pts))
        if position == len(self.pts) or self.pts[position] != pts:
            raise _SeekMissed
        return position


def _frame_table(path: Path) -> _FrameTable | None:
    """Timestamps of every frame from one pass over the packets (no decoding), or None if unusable.

    Numbering frames by their place among all timestamps is exact for variable frame rates,
    unlike ``pts * fps``; it needs every packet to carry a distinct timestamp.
    """
    pts, keyframe_pts = [], []
    try:
        with _open_video(path) as container:
            stream = _video_stream(path, container)
            time_base = float(stream.time_base) if stream.time_base else 0.0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # flush packet
                if packet.pts is None:
                    return None
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keyframe_pts.append(packet.pts)
    except av.error.FFmpegError:
        return None
    table = np.sort(np.asarray(pts, dtype=np.int64))
    if len(table) == 0 or np.any(np.diff(table) == 0):
        return None
    keyframes = np.unique(np.searchsorted(table, np.asarray(keyframe_pts, dtype=np.int64)))
    return _FrameTable(table, keyframes, time_base)


def _plan_runs(wanted: np.ndarray, table: _FrameTable, seek_threshold: int) -> list[tuple[bool, np.ndarray]]:
    """Split sorted frame indices into runs decoded one after another: (seek first?, frames).

    A run starts with a seek when its first frame lies at least ``seek_threshold`` frames past
    the previous run's last and behind a keyframe that decoding on would not reach before it.
    """
    runs: list[tuple[bool, list[int]]] = [(int(wanted[0]) >= seek_threshold, [int(wanted[0])])]
    for index in wanted[1:]:
        previous = runs[-1][1][-1]
        if index - previous >= seek_threshold and table.keyframe_before(int(index)) > previous:
            runs.append((True, [int(index)]))
        else:
            runs[-1][1].append(int(index))
    return [(seek, np.asarray(run)) for seek, run in runs]


def _indexed_frames(
    container, stream, runs: list[tuple[bool, np.ndarray]], table: _FrameTable | None
) -> Generator[tuple[int, av.VideoFrame], bool, None]:
    """Decoded frames with their display index and whether they end their run's decoding.

    Without a table frames are counted from the start. With one, each seeking run jumps to the
    keyframe before its first frame and frames are numbered by their timestamps; the caller
    stops the generator's current run by sending True (its frames are all in).
    """
    if table is None:
        for index, frame in enumerate(container.decode(stream)):
            if (yield index, frame):
                return
        return
    for seek, run in runs:
        if seek:
            target = int(table.pts[min(int(run[0]), len(table.pts) - 1)])
            try:
                container.seek(target, stream=stream, backward=True)
            except av.error.FFmpegError as error:
                raise _SeekMissed from error
        first = True
        for frame in container.decode(stream):
            index = table.index_of(frame.pts)
            if first and seek and index > run[0]:
                raise _SeekMissed  # landed after the target: the keyframe before it was not found
            first = False
            if (yield index, frame):
                break
        else:
            return  # end of the stream: the frames still wanted get the last one


def _decode_video(
    path: Path, indices: np.ndarray, threads: bool, seek_threshold: int | None, table: _FrameTable | None = None
) -> tuple[np.ndarray, DecodeReport]:
    """Decode the frames ``indices``; with a ``seek_threshold``, skip long stretches by seeking."""
    wanted = np.unique(indices)  # sorted
    if seek_threshold is None:
        table = None
    elif table is None:
        table = _frame_table(path)
    runs = _plan_runs(wanted, table, seek_threshold) if table is not None else [(False, wanted)]
    run_ends = np.cumsum([len(run) for _, run in runs])  # position in `wanted` after each run
    seeks = sum(seek for seek, _ in runs)
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
        decoding = _indexed_frames(container, stream, runs, table)
        try:
            item = next(decoding, None)
            while item is not None:
                index, frame = item
                decoded += 1
                last_index, last_frame = index, frame
                run_done = False
                if index >= wanted[pending]:
                    # A timestamp gap may skip an index: the next frame stands in.
                    array = _to_rgb(frame, stream)
                    while pending < len(wanted) and wanted[pending] <= index:
                        frames[int(wanted[pending])] = array
                        pending += 1
                    if pending == len(wanted):
                        break
                    run_done = pending in run_ends
                item = decoding.send(run_done)
        except StopIteration:
            pass
        except av.error.FFmpegError as error:
            if decoded == 0:
                raise VideoReadError(f"{path}: cannot decode video ({ffmpeg_reason(error)})") from error
            decode_error = ffmpeg_reason(error)
        finally:
            decoding.close()
        if last_frame is None:
            raise VideoReadError(f"{path}: video stream has no frames")
        clamped = pending < len(wanted)
        if clamped:
            array = _to_rgb(last_frame, stream)
            for index in wanted[pending:]:
                frames[int(index)] = array
    report = DecodeReport(decoded, last_index, seeks > 0, clamped, decode_error, seeks)
    return _stack_frames(path, [frames[int(i)] for i in indices]), report


def read_video_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray,
    threads: bool = False,
    seek_threshold: int = DEFAULT_SEEK_THRESHOLD,
    _table: _FrameTable | None = None,
) -> tuple[np.ndarray, DecodeReport]:
    """Frames ``indices`` of a video file as ``(len(indices), H, W, 3)`` RGB uint8, and a report.

    Stretches of at least ``seek_threshold`` frames before or between requested frames are
    skipped by seeking to the keyframe before the next one. ``threads=True`` lets FFmpeg decode
    with several threads (good in a single process; inside DataLoader workers one thread each is
    faster).
    """
    path = _existing_path(path)
    if path.is_dir():
        raise VideoReadError(f"{path}: is a folder, not a video file")
    indices = _check_indices(path, indices)
    wanted = np.unique(indices)
    if wanted[0] >= seek_threshold or np.diff(wanted, prepend=wanted[0]).max() >= seek_threshold:
        try:
            return _decode_video(path, indices, threads, seek_threshold, _table)
        except _SeekMissed:
            pass
    return _decode_video(path, indices, threads, None)


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


@dataclass(frozen=True)
class ClipRead:
    """A clip's sampled frames and what reading them found.

    ``clip_length`` is the number of frames the container (or folder) holds by its own account;
    ``decode`` the video decoder's report (None for frame folders); ``sampled_by_time`` is true for
    variable-frame-rate videos, whose frames were chosen by display time; ``times`` are the sampled
    frames' display times in seconds from the first frame (None when the file gives no timestamps).
    """

    frames: np.ndarray
    indices: np.ndarray
    clip_length: int
    decode: DecodeReport | None = None
    sampled_by_time: bool = False
    times: np.ndarray | None = None  # display times (s) of the sampled frames, when the video says

    @property
    def truncated(self) -> bool:
        """Sampled frames lay past the last frame that decodes (and were given that frame)."""
        return self.decode is not None and self.decode.clamped

    @property
    def decoded_share(self) -> float:
        """Share of the clip, by frame count, that decodes: 1.0 unless :attr:`truncated`."""
        if not self.truncated:
            return 1.0
        return min(1.0, (self.decode.last_index + 1) / max(self.clip_length, 1))

    def summary(self) -> dict:
        """The findings as JSON-ready values."""
        return {"truncated": self.truncated, "decoded_share": round(self.decoded_share, 4),
                "clip_length": int(self.clip_length), "sampled_by_time": self.sampled_by_time}


def check_decoded_share(path: str | Path, clip: ClipRead, min_decoded_share: float) -> None:
    """Refuse a truncated clip of which less than ``min_decoded_share`` decodes (:class:`TruncatedVideoError`)."""
    if not 0.0 <= min_decoded_share <= 1.0:
        raise ValueError(f"min_decoded_share must be in [0, 1], got {min_decoded_share}")
    if clip.truncated and clip.decoded_share < min_decoded_share:
        raise TruncatedVideoError(
            f"{path}: truncated: only {clip.decoded_share:.0%} of its {clip.clip_length} frames decode "
            f"(frames 0-{clip.decode.last_index}; need at least {min_decoded_share:.0%}); the rest of the file is "
            "missing or corrupt, e.g. a partly copied phone video"
        )


def read_sampled_clip(
    path: str | Path,
    num_frames: int,
    mode: SamplingMode = "eval",
    rng: np.random.Generator | None = None,
    threads: bool = False,
    cache: FrameFolderCache | None = None,
) -> ClipRead:
    """Sample ``num_frames`` frames with the segment samplers and read them, reporting truncation.

    ``cache`` keeps frame folders' decoded images for the next read (:class:`FrameFolderCache`).

    Constant-frame-rate videos and frame folders are sampled by frame number; a video whose frame
    durations vary (:data:`VFR_TOLERANCE`) is sampled by display time, so each stretch of time
    gets one frame however densely the phone recorded it.
    """
    path = _existing_path(path)
    if path.is_dir():
        names = _folder_frame_names(path) if cache is None else cache.names(path)
        indices = sample_frame_indices(len(names), num_frames, mode=mode, rng=rng)
        return ClipRead(_read_folder_frames(path, indices, names, cache), indices, len(names))
    clip_length = count_frames(path)
    table = _frame_table(path)
    by_time = table is not None and len(table.pts) == clip_length and table.variable_rate()
    if by_time:
        times = table.seconds()
        end = times[-1] + float(np.median(np.diff(times)))
        indices = sample_indices_by_time(times, end, num_frames, mode=mode, rng=rng)
    else:
        # A table shorter than the index (a cut file) keeps frame numbers, so the cut shows as truncation.
        indices = sample_frame_indices(clip_length, num_frames, mode=mode, rng=rng)
    frames, report = read_video_frames(path, indices, threads=threads, _table=table)
    times = None
    if table is not None and len(table.pts) == clip_length and table.time_base > 0:
        times = table.seconds()[indices]
    return ClipRead(frames, indices, clip_length, report, by_time, times)


def read_clip(
    path: str | Path,
    num_frames: int,
    mode: SamplingMode = "eval",
    rng: np.random.Generator | None = None,
    threads: bool = False,
    cache: FrameFolderCache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``num_frames`` frames and read them: (frames, indices) of :func:`read_sampled_clip`."""
    clip = read_sampled_clip(path, num_frames, mode=mode, rng=rng, threads=threads, cache=cache)
    return clip.frames, clip.indices


def video_duration(path: str | Path) -> float:
    """Length of a video file in seconds, from its container.

    Uses the video stream's duration, else the container's, else frames over frame rate.
    Raises :class:`VideoReadError` for files that are missing, unreadable or have no video.
    """
    path = _existing_path(path)
    if path.is_dir():
        raise VideoReadError(f"{path}: is a folder of frames, which has no duration")
    try:
        with _open_video(path) as container:
            stream = _video_stream(path, container)
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / av.time_base
            rate = stream.average_rate or stream.guessed_rate
    except av.error.FFmpegError as error:
        raise VideoReadError(f"{path}: cannot read video duration ({ffmpeg_reason(error)})") from error
    if not rate:
        raise VideoReadError(f"{path}: container gives neither a duration nor a frame rate")
    return count_frames(path) / float(rate)
