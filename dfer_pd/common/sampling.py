"""Which frames of a clip to read: the segment samplers of DFER-CLIP.

A clip of ``clip_length`` frames is cut into ``num_frames`` equal stretches of time, one per
frame to sample (each ``clip_length / num_frames`` frames long, frame ``i`` covering ``[i, i + 1)``).
Training takes one random frame from each stretch; evaluation takes the frame under the
centre of each stretch, ``floor((k + 0.5) * clip_length / num_frames)``, which is the
reference code's test-time choice. Unlike the reference's training sampler, which uses
segments of ``clip_length // num_frames`` frames and never draws the last
``clip_length % num_frames`` frames, the random stretches here cover the whole clip.

Clips shorter than ``num_frames`` take every frame once and repeat the last one.
Indices are always non-decreasing and lie in ``[0, clip_length)``.

Variable-frame-rate videos are cut into equal stretches of *time* instead
(:func:`sample_indices_by_time`): the frame shown at each chosen time is taken. For evenly spaced
frames this picks the same frames as the frame-number samplers.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

SamplingMode = Literal["train", "eval"]


def _check_sizes(clip_length: int, num_frames: int) -> None:
    for name, value in (("clip_length", clip_length), ("num_frames", num_frames)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def _pad_short_clip(clip_length: int, num_frames: int) -> np.ndarray:
    """Every frame once, then the last frame repeated up to ``num_frames`` frames."""
    return np.minimum(np.arange(num_frames, dtype=np.int64), clip_length - 1)


def segment_centre_indices(clip_length: int, num_frames: int) -> np.ndarray:
    """Centre frame of each of ``num_frames`` equal segments (evaluation sampling).

    Exact integer arithmetic, so no float rounding moves a centre to the next frame.
    """
    _check_sizes(clip_length, num_frames)
    if clip_length <= num_frames:
        return _pad_short_clip(clip_length, num_frames)
    k = np.arange(num_frames, dtype=np.int64)
    return (2 * k + 1) * clip_length // (2 * num_frames)


def segment_random_indices(
    clip_length: int, num_frames: int, rng: np.random.Generator
) -> np.ndarray:
    """One random frame from each of ``num_frames`` equal segments (training sampling).

    A time is drawn uniformly inside each segment and the frame under it is taken, so a
    frame straddling two segments can be drawn by either; neighbouring picks may then
    coincide when the clip is less than twice as long as ``num_frames``.
    """
    _check_sizes(clip_length, num_frames)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if clip_length <= num_frames:
        return _pad_short_clip(clip_length, num_frames)
    k = np.arange(num_frames, dtype=np.int64)
    times = (k + rng.random(num_frames)) * (clip_length / num_frames)
    # Frames that segment k overlaps: floor(k * L) .. ceil((k + 1) * L) - 1, L = n / M.
    first = k * clip_length // num_frames
    last = -(-(k + 1) * clip_length // num_frames) - 1
    return np.clip(np.floor(times).astype(np.int64), first, last)


def sample_frame_indices(
    clip_length: int,
    num_frames: int,
    mode: SamplingMode = "eval",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame indices for a clip: random per segment for ``"train"``, centres for ``"eval"``.

    ``rng`` is required in training mode so that every draw is seeded by the caller.
    """
    if mode == "train":
        if rng is None:
            raise ValueError("mode='train' needs rng (a seeded numpy.random.Generator)")
        return segment_random_indices(clip_length, num_frames, rng)
    if mode == "eval":
        return segment_centre_indices(clip_length, num_frames)
    raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")


def sample_indices_by_time(
    frame_times: np.ndarray,
    end_time: float,
    num_frames: int,
    mode: SamplingMode = "eval",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame indices for a clip whose frames are shown at ``frame_times`` (seconds, sorted) until ``end_time``.

    ``[frame_times[0], end_time)`` is cut into ``num_frames`` equal stretches; ``"eval"`` takes the
    frame on screen at the centre of each, ``"train"`` at a random time inside it. A clip with no
    more frames than ``num_frames`` takes every frame once and repeats the last one, as the
    frame-number samplers do.
    """
    times = np.asarray(frame_times, dtype=np.float64)
    if times.ndim != 1 or len(times) == 0 or np.any(np.diff(times) < 0):
        raise ValueError("frame_times must be a non-empty, sorted 1-D array")
    _check_sizes(len(times), num_frames)
    if not end_time > times[-1]:
        raise ValueError(f"end_time ({end_time}) must lie after the last frame time ({times[-1]})")
    if len(times) <= num_frames:
        return _pad_short_clip(len(times), num_frames)
    k = np.arange(num_frames, dtype=np.float64)
    if mode == "train":
        if not isinstance(rng, np.random.Generator):
            raise ValueError("mode='train' needs rng (a seeded numpy.random.Generator)")
        offsets = rng.random(num_frames)
    elif mode == "eval":
        offsets = np.full(num_frames, 0.5)
    else:
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    chosen = times[0] + (k + offsets) * (end_time - times[0]) / num_frames
    return np.clip(np.searchsorted(times, chosen, side="right") - 1, 0, len(times) - 1).astype(np.int64)
