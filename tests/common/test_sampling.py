"""Segment samplers: exact evaluation indices, bounded and repeatable training indices."""

import numpy as np
import pytest

from dfer_pd.common.sampling import (
    sample_frame_indices,
    segment_centre_indices,
    segment_random_indices,
)


def test_centre_32_frames_16_segments():
    assert segment_centre_indices(32, 16).tolist() == list(range(1, 32, 2))


def test_centre_70_frames_matches_reference_formula():
    # DFER-CLIP's test sampler: int(tick / 2 + tick * k), tick = 70 / 16.
    expected = [2, 6, 10, 15, 19, 24, 28, 32, 37, 41, 45, 50, 54, 59, 63, 67]
    assert segment_centre_indices(70, 16).tolist() == expected


def test_centre_is_the_frame_under_each_segment_centre():
    # 19 / 16 segments: segment 2 spans [2.375, 3.5625), its centre 2.97 lies in frame 2.
    indices = segment_centre_indices(19, 16)
    assert indices[2] == 2
    assert indices.tolist() == [(2 * k + 1) * 19 // 32 for k in range(16)]
    assert np.all(np.diff(indices) > 0)


def test_short_clip_repeats_last_frame_in_both_modes():
    expected = list(range(10)) + [9] * 6
    assert segment_centre_indices(10, 16).tolist() == expected
    rng = np.random.default_rng(0)
    assert segment_random_indices(10, 16, rng).tolist() == expected
    assert segment_centre_indices(1, 4).tolist() == [0, 0, 0, 0]
    assert segment_centre_indices(16, 16).tolist() == list(range(16))
    assert segment_random_indices(16, 16, rng).tolist() == list(range(16))


@pytest.mark.parametrize("num_frames", [17, 19, 31, 70, 847])
def test_random_indices_stay_in_their_segments(num_frames):
    rng = np.random.default_rng(123)
    m = 16
    k = np.arange(m)
    first = k * num_frames // m  # floor(k * n / M)
    last = -(-(k + 1) * num_frames // m) - 1  # ceil((k + 1) * n / M) - 1
    for _ in range(200):
        indices = segment_random_indices(num_frames, m, rng)
        assert indices.dtype == np.int64 and indices.shape == (m,)
        assert np.all(indices >= first) and np.all(indices <= last)
        assert np.all(np.diff(indices) >= 0)


def test_random_indices_reach_every_frame_including_the_tail():
    # 70 / 16: the reference's training sampler never draws frames 64..69; this one does.
    rng = np.random.default_rng(5)
    seen = np.concatenate([segment_random_indices(70, 16, rng) for _ in range(500)])
    assert set(seen.tolist()) == set(range(70))


def test_random_indices_repeatable_with_seed_and_vary_without():
    a = segment_random_indices(300, 16, np.random.default_rng(7))
    b = segment_random_indices(300, 16, np.random.default_rng(7))
    c = segment_random_indices(300, 16, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dispatch_by_mode():
    np.testing.assert_array_equal(sample_frame_indices(70, 16, "eval"), segment_centre_indices(70, 16))
    np.testing.assert_array_equal(
        sample_frame_indices(70, 16, "train", np.random.default_rng(1)),
        segment_random_indices(70, 16, np.random.default_rng(1)),
    )
    with pytest.raises(ValueError, match="needs rng"):
        sample_frame_indices(70, 16, "train")
    with pytest.raises(ValueError, match="'train' or 'eval'"):
        sample_frame_indices(70, 16, "test")


@pytest.mark.parametrize(
    "clip_length, num_frames, message",
    [(0, 16, "clip_length must be at least 1"), (10, 0, "num_frames must be at least 1"),
     (-3, 16, "clip_length"), (10.0, 16, "clip_length must be an integer"), (True, 16, "integer")],
)
def test_invalid_sizes(clip_length, num_frames, message):
    with pytest.raises(ValueError, match=message):
        segment_centre_indices(clip_length, num_frames)
    with pytest.raises(ValueError, match=message):
        segment_random_indices(clip_length, num_frames, np.random.default_rng(0))


def test_random_needs_a_generator():
    with pytest.raises(ValueError, match="Generator"):
        segment_random_indices(70, 16, 42)


def test_numpy_integer_sizes_accepted():
    assert segment_centre_indices(np.int64(32), np.int32(16)).tolist() == list(range(1, 32, 2))
