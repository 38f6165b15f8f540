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
    rgb = frames.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0
    cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0
    t, h, w = y.shape
    chroma = [c.reshape(t, h // 2, 2, w // 2, 2).mean(axis=(2, 4)).reshape(t, -1) for c in (cb, cr)]
    packed = np.concatenate([y.reshape(t, -1), *chroma], axis=1).reshape(t, h * 3 // 2, w)
    return np.clip(np.rint(packed), 0, 255).astype(np.uint8)


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
