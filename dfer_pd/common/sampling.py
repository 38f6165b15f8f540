"""Which frames of a clip to read: the segment samplers of DFER-CLIP.

A clip of ``num_frames`` frames is cut into ``num_segments`` equal stretches of time
(each ``num_frames / num_segments`` frames long, frame ``i`` covering ``[i, i + 1)``).
Training takes one random frame from each stretch; evaluation takes the frame under the
centre of each stretch, ``floor((k + 0.5) * num_frames / num_segments)``, which is the
reference code's test-time choice. Unlike the reference's training sampler, which uses
segments of ``num_frames // num_segments`` frames and never draws the last
``num_frames % num_segments`` frames, the random stretches here cover the whole clip.

Clips with fewer frames than segments take every frame once and repeat the last one.
Indices are always non-decreasing and lie in ``[0, num_frames)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

SamplingMode = Literal["train", "eval"]


def _check_sizes(num_frames: int, num_segments: int) -> None:
    for name, value in (("num_frames", num_frames), ("num_segments", num_segments)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def _pad_short_clip(num_frames: int, num_segments: int) -> np.ndarray:
    """Every frame once, then the last frame repeated up to ``num_segments``."""
    return np.minimum(np.arange(num_segments, dtype=np.int64), num_frames - 1)


def segment_centre_indices(num_frames: int, num_segments: int) -> np.ndarray:
    """Centre frame of each of ``num_segments`` equal segments (evaluation sampling).

    Exact integer arithmetic, so no float rounding moves a centre to the next frame.
    """
    _check_sizes(num_frames, num_segments)
    if num_frames <= num_segments:
        return _pad_short_clip(num_frames, num_segments)
    k = np.arange(num_segments, dtype=np.int64)
    return (2 * k + 1) * num_frames // (2 * num_segments)


def segment_random_indices(
    num_frames: int, num_segments: int, rng: np.random.Generator
) -> np.ndarray:
    """One random frame from each of ``num_segments`` equal segments (training sampling).

    A time is drawn uniformly inside each segment and the frame under it is taken, so a
    frame straddling two segments can be drawn by either; neighbouring picks may then
    coincide when the clip is less than twice as long as ``num_segments``.
    """
    _check_sizes(num_frames, num_segments)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if num_frames <= num_segments:
        return _pad_short_clip(num_frames, num_segments)
    k = np.arange(num_segments, dtype=np.int64)
    times = (k + rng.random(num_segments)) * (num_frames / num_segments)
    # Frames that segment k overlaps: floor(k * L) .. ceil((k + 1) * L) - 1, L = n / M.
    first = k * num_frames // num_segments
    last = -(-(k + 1) * num_frames // num_segments) - 1
    return np.clip(np.floor(times).astype(np.int64), first, last)


def sample_frame_indices(
    num_frames: int,
    num_segments: int,
    mode: SamplingMode = "eval",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame indices for a clip: random per segment for ``"train"``, centres for ``"eval"``.

    ``rng`` is required in training mode so that every draw is seeded by the caller.
    """
    if mode == "train":
        if rng is None:
            raise ValueError("mode='train' needs rng (a seeded numpy.random.Generator)")
        return segment_random_indices(num_frames, num_segments, rng)
    if mode == "eval":
        return segment_centre_indices(num_frames, num_segments)
    raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
