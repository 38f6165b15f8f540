"""Eq. 4 features, per-step inputs, fold-local scaling and the cohort intensity file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dfer_pd.stage2.features import (
    FEATURE_NAMES,
    CohortFileError,
    CohortIntensities,
    SequenceScaler,
    expression_features,
    sequence_inputs,
    signed_log,
)
from dfer_pd.synthetic.intensities import synthetic_cohort

# Row j = the video asking for class j; the highlight value is intensities[j, j].
HAND_INTENSITIES = np.array(
    [
        [4.0, 1.0, 1.0, 2.0],  # hv 4, mean 2, std sqrt(1.5)
        [1.0, 1.0, 1.0, 1.0],  # std 0 -> z 0
        [0.0, 0.0, 0.0, 0.0],  # mean 0 -> pd 0
        [2.0, 4.0, 6.0, 0.0],  # hv 0 is the minimum, mean 3, std sqrt(5)
    ]
)
HAND_FEATURES = np.array(
    [
        # hv, mean, std, z, pd, range, d_min, d_max
        [4.0, 2.0, math.sqrt(1.5), 2.0 / math.sqrt(1.5), 1.0, 3.0, 3.0, 0.0],
        [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 3.0, math.sqrt(5.0), -3.0 / math.sqrt(5.0), -1.0, 6.0, 0.0, -6.0],
    ]
)


def test_expression_features_match_hand_computed_values():
    features = expression_features(HAND_INTENSITIES)
    assert FEATURE_NAMES == ("hv", "mean", "std", "z", "pd", "range", "d_min", "d_max")
    assert features.shape == (4, 8) and features.dtype == np.float64
    np.testing.assert_allclose(features, HAND_FEATURES, rtol=1e-12, atol=1e-12)


def test_expression_features_keep_batch_dims_and_torch_type():
    batch = np.stack([HAND_INTENSITIES, 2 * HAND_INTENSITIES])[None]  # (1, 2, 4, 4)
    out = expression_features(torch.as_tensor(batch, dtype=torch.float32))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.shape == (1, 2, 4, 8)
    np.testing.assert_allclose(out[0, 0].numpy(), HAND_FEATURES, rtol=1e-6, atol=1e-6)
    # z and pd are scale-free, every other feature scales with the intensities.
    np.testing.assert_allclose(out[0, 1, :, [3, 4]].numpy(), HAND_FEATURES[:, [3, 4]], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[0, 1, :, [0, 1, 2, 5, 6, 7]].numpy(), 2 * HAND_FEATURES[:, [0, 1, 2, 5, 6, 7]],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale", [math.exp(100), 1e300, np.finfo(np.float64).max / 8])
def test_expression_features_stay_finite_for_huge_intensities(scale):
    features = expression_features(HAND_INTENSITIES * scale)
    assert np.isfinite(features).all()
    np.testing.assert_allclose(features[:, [3, 4]], HAND_FEATURES[:, [3, 4]], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(features[0, 1], 2 * scale, rtol=1e-12)


@pytest.mark.parametrize(
    "bad, message",
    [(np.ones((4, 3)), "shape"), (-HAND_INTENSITIES - 1, "non-negative"), (np.full((4, 4), np.nan), "NaN")],
)
def test_expression_features_reject_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        expression_features(bad)


def test_sequence_inputs_per_kind():
    intensities = np.stack([HAND_INTENSITIES, HAND_INTENSITIES + 1])
    assert sequence_inputs(intensities, "raw").shape == (2, 4, 4)
    np.testing.assert_array_equal(sequence_inputs(intensities, "processed"), expression_features(intensities))
    both = sequence_inputs(intensities, "both")
    assert both.shape == (2, 4, 12)
    np.testing.assert_array_equal(both[..., :4], intensities)
    with pytest.raises(ValueError, match="unknown input kind"):
        sequence_inputs(intensities, "pixels")


def test_scaler_statistics_come_from_training_rows_only():
    rng = np.random.default_rng(0)
    inputs = sequence_inputs(np.exp(rng.uniform(0, 40, size=(30, 4, 4))), "both")
    train = np.arange(20)
    scaler = SequenceScaler().fit(inputs[train])
    train_rows = signed_log(inputs[train]).reshape(-1, inputs.shape[-1])
    np.testing.assert_allclose(scaler.scaler_.mean_, train_rows.mean(axis=0))
    np.testing.assert_allclose(scaler.scaler_.scale_, train_rows.std(axis=0))
    all_rows = signed_log(inputs).reshape(-1, inputs.shape[-1])
    assert not np.allclose(scaler.scaler_.mean_, all_rows.mean(axis=0))
    scaled = scaler.transform(inputs)
    assert scaled.shape == inputs.shape
    np.testing.assert_allclose(scaled[train].reshape(-1, inputs.shape[-1]).mean(axis=0), 0, atol=1e-9)
    # Signed log keeps the sign of negative features (d_max <= 0, z and pd can be negative).
    assert np.all(np.sign(signed_log(np.array([-5.0, 0.0, 5.0]))) == [-1, 0, 1])


def test_cohort_roundtrip_without_pickle(tmp_path):
    cohort = synthetic_cohort(6, 5, feature_dim=3, seed=1)
    path = cohort.save(tmp_path / "cohort.npz")
    assert path == tmp_path / "cohort.npz" and path.is_file()
    with np.load(path, allow_pickle=False) as archive:
        assert archive["subject_ids"].dtype.kind == "U"
    loaded = CohortIntensities.load(path)
    assert loaded.subject_ids == cohort.subject_ids and loaded.tau == cohort.tau
    np.testing.assert_array_equal(loaded.labels, cohort.labels)
    np.testing.assert_array_equal(loaded.cosine, cohort.cosine)
    np.testing.assert_array_equal(loaded.video_features, cohort.video_features)
    np.testing.assert_allclose(loaded.intensities, np.exp(cohort.cosine / cohort.tau))
    assert int(loaded.labels.sum()) == 6 and len(loaded) == 11

    bare = CohortIntensities.load(synthetic_cohort(5, 5).save(tmp_path / "bare.npz"))
    assert bare.video_features is None


def test_cohort_errors_name_the_file_and_problem(tmp_path):
    with pytest.raises(CohortFileError, match="no such"):
        CohortIntensities.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(CohortFileError, match="junk.npz"):
        CohortIntensities.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "partial.npz", labels=np.zeros(2), cosine=np.zeros((2, 4, 4)))
    with pytest.raises(CohortFileError, match=r"partial.npz: missing arrays \['contract', 'subject_ids'\]"):
        CohortIntensities.load(tmp_path / "partial.npz")
    np.savez(tmp_path / "shape.npz", subject_ids=np.array(["a", "b"]), labels=np.zeros(2),
             cosine=np.zeros((2, 4, 3)), tau=0.01)
    with pytest.raises(CohortFileError, match=r"shape.npz: cosine must have shape \(2, 4, 4\)"):
        CohortIntensities.load(tmp_path / "shape.npz")
    with pytest.raises(CohortFileError, match="unique"):
        CohortIntensities(["a", "a"], np.array([0, 1]), np.zeros((2, 4, 4)), tau=0.01)
    with pytest.raises(CohortFileError, match="0 \\(HC\\) or 1 \\(PD\\)"):
        CohortIntensities(["a", "b"], np.array([0, 2]), np.zeros((2, 4, 4)), tau=0.01)
    with pytest.raises(CohortFileError, match="overflows"):
        _ = CohortIntensities(["a"], np.array([1]), np.ones((1, 4, 4)), tau=1e-4).intensities
