"""Video files for the synthetic world: byte-identical H.264 mp4 through PyAV (constant QP, one thread)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

def rgb_to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(T, H, W, 3)`` to planar BT.601 limited-range 4:2:0, ``(T, H * 3 // 2, W)`` uint8.

    Done in numpy rather than by FFmpeg's scaler inside the encoder, so the samples handed to x264
    are fixed by the frames alone. Chroma is the mean of each 2x2 block; decoders' default BT.601
    conversion inverts it.
    """
    # Channel planes made contiguous first (twice as fast); every float32 operation and the order of
    # the 2x2 chroma sums are those of the former ``.mean(axis=(2, 4))``, so the bytes are unchanged.
    r, g, b = frames.transpose(3, 0, 1, 2).astype(np.float32, order="C")
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0
    cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0
    t, h, w = y.shape
    packed = np.empty((t, h * w * 3 // 2), dtype=np.float32)
    packed[:, : h * w] = y.reshape(t, -1)
    for k, c in enumerate((cb, cr)):
        block = c.reshape(t, h // 2, 2, w // 2, 2)
        chroma = block[:, :, 0, :, 0] + block[:, :, 0, :, 1]
        chroma += block[:, :, 1, :, 0] + block[:, :, 1, :, 1]
        chroma /= np.float32(4)
        start = h * w + k * (h * w // 4)
        packed[:, start: start + h * w // 4] = chroma.reshape(t, -1)
    np.rint(packed, out=packed)
    return np.clip(packed, 0, 255, out=packed).astype(np.uint8).reshape(t, h * 3 // 2, w)


def encode_mp4(path: str | Path, frames: np.ndarray | Sequence[np.ndarray], fps: float, faststart: bool = False) -> Path:
    """Encode RGB uint8 frames ``(T, H, W, 3)`` as H.264/yuv420p MP4 (QP 18), byte-for-byte repeatably.

    H.264 with 4:2:0 chroma needs even width and height. ``faststart`` puts the index (moov) before
    the frames, as phones and streaming tools write them: a file copied only in part still opens.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(
            f"{path}: frames must be a non-empty uint8 array (T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"{path}: H.264 yuv420p needs even frame sizes, got {width}x{height}")
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        # Constant QP and one thread keep the bytes repeatable. CRF's macroblock-tree rate control
        # gave different bytes for the same frames after PyAV had decoded a video in the process.
        # "veryfast" encodes noisy synthetic frames three times faster than "fast", in smaller files.
        options = {"qp": "18", "preset": "veryfast", "threads": "1"}
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001), options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        for planes in rgb_to_yuv420p(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")))
        container.mux(stream.encode(None))
    return path
