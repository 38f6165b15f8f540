"""The statistics behind the reported figures: corrected intervals and paired tests, permutation p-values,
calibration and the Brier score, each checked against hand computations or a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression

from dfer_pd.stage2.statistics import (
    Calibrator,
    auc_interval,
    brier_score,
    corrected_paired_ttest,
    corrected_t_interval,
    cross_fitted_calibration,
    holm_adjust,
    permutation_p_value,
    reliability_curve,
    widest,
    wilson_interval,
)
from dfer_pd.stage2.settings import StatsConfig


def test_corrected_interval_by_hand():
    scores = np.array([[0.80, 0.90, 0.85, 0.75, 0.95], [0.85, 0.80, 0.90, 0.80, 0.90]])  # 2 repeats x 5 folds
    low, high = corrected_t_interval(scores, n_train=80, n_test=20, confidence=0.95)
    variance = np.var(scores, ddof=1) * (1 / 10 + 20 / 80)
    half = stats.t.ppf(0.975, 9) * math.sqrt(variance)
    assert (low, high) == pytest.approx((scores.mean() - half, scores.mean() + half))
    naive = stats.t.ppf(0.975, 9) * np.std(scores, ddof=1) / math.sqrt(10)
    assert high - low > 2 * naive * 1.5  # the correction widens the naive interval (here 1.87x)
    assert np.isnan(corrected_t_interval(np.array([0.9]), 80, 20)).all()


def test_corrected_paired_ttest_by_hand_and_edge_cases():
    a = np.array([0.90, 0.85, 0.80, 0.95, 0.90, 0.85])
    b = np.array([0.85, 0.85, 0.75, 0.90, 0.80, 0.85])
    test = corrected_paired_ttest(a, b, n_train=40, n_test=10)
    d = a - b
    t = d.mean() / math.sqrt(np.var(d, ddof=1) * (1 / 6 + 10 / 40))
    assert test.t == pytest.approx(t) and test.df == 5
    assert test.p_value == pytest.approx(2 * stats.t.sf(abs(t), 5))
    naive = stats.ttest_rel(a, b).pvalue
    assert test.p_value > naive  # overlapping training sets: less evidence than a naive paired t-test claims
    assert corrected_paired_ttest(a, a, 40, 10).p_value == 1.0
    assert corrected_paired_ttest(a + 0.1, a, 40, 10).p_value < 1e-10
    with pytest.raises(ValueError, match="same folds"):
        corrected_paired_ttest(a, b[:-1], 40, 10)


def test_permutation_p_value_counts_ties_and_is_never_zero():
    assert permutation_p_value(0.9, np.array([0.5, 0.6, 0.9, 0.95])) == pytest.approx(3 / 5)
    assert permutation_p_value(1.0, np.full(99, 0.5)) == pytest.approx(0.01)
    assert math.isnan(permutation_p_value(math.nan, np.ones(3)))


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_lowers_the_brier_score_of_miscalibrated_scores(method):
    """Scores made overconfident on purpose (logit x 3 + a shift) are brought back towards the true risk."""
    rng = np.random.default_rng(0)
    risk = rng.uniform(0.05, 0.95, size=4000)
    labels = (rng.uniform(size=risk.size) < risk).astype(int)
    logit = np.log(risk / (1 - risk))
    scores = 1 / (1 + np.exp(-(3 * logit + 1.0)))
    fit, held_out = slice(0, 2000), slice(2000, None)
    calibrator = Calibrator.fit(scores[fit], labels[fit], method)
    raw, calibrated = brier_score(labels[held_out], scores[held_out]), brier_score(labels[held_out], calibrator(scores[held_out]))
    assert calibrated < raw - 0.02
    assert brier_score(labels[held_out], risk[held_out]) <= calibrated + 0.01  # near the best possible
    restored = Calibrator.from_dict(calibrator.to_dict())
    np.testing.assert_array_equal(restored(scores[held_out]), calibrator(scores[held_out]))
    assert isinstance(calibrator(0.7), float) and 0 <= calibrator(0.7) <= 1
    honest = cross_fitted_calibration(scores, labels, np.arange(len(scores)), method)
    assert brier_score(labels, honest) < brier_score(labels, scores) - 0.02


def test_calibrator_refuses_bad_input_and_none_is_identity():
    assert Calibrator.fit([0.2, 0.8], [0, 1], "none")(0.3) == 0.3
    with pytest.raises(ValueError, match="both HC and PD"):
        Calibrator.fit([0.2, 0.8], [1, 1], "platt")
    with pytest.raises(ValueError, match="calibration must be one of"):
        Calibrator.fit([0.2, 0.8], [0, 1], "beta")
    with pytest.raises(ValueError, match="calibration must be one of"):
        StatsConfig(calibration="beta")
    assert StatsConfig().calibration == "auto"
    with pytest.raises(ValueError, match="not a platt, isotonic or none"):
        Calibrator.from_dict({"method": "platt", "params": {"a": 1.0}})
    with pytest.raises(ValueError, match="permutations"):
        StatsConfig(permutations=-1)


def test_reliability_curve_and_brier():
    labels = np.array([0, 0, 1, 1, 1, 0])
    p_pd = np.array([0.05, 0.15, 0.95, 0.85, 0.9, 0.6])
    curve = reliability_curve(labels, p_pd, n_bins=5)
    assert curve["count"] == [2, 1, 3] and curve["observed"] == pytest.approx([0.0, 0.0, 1.0])
    assert brier_score(labels, p_pd) == pytest.approx(np.mean((p_pd - labels) ** 2))


def test_platt_slope_is_positive_or_refused_and_auto_picks_the_best_brier():
    """Shuffled labels: a Platt fit that would invert p(PD) is refused (none, with the reason); overconfident
    scores: auto picks a calibration that beats raw p(PD) out of fold; calibrated scores: auto keeps none."""
    from dfer_pd.stage2.statistics import choose_calibration

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400)
    inverted = np.where(labels == 1, rng.uniform(0.05, 0.6, 400), rng.uniform(0.4, 0.95, 400))
    refused = Calibrator.fit(inverted, labels, "platt")
    assert refused.method == "none" and refused.params["platt_a"] < 0 and "not positive" in refused.note
    assert refused(0.8) == 0.8 and Calibrator.from_dict(refused.to_dict()).note == refused.note
    with pytest.raises(ValueError, match="slope must be positive"):
        Calibrator.from_dict({"method": "platt", "params": {"a": -0.8, "b": 0.1}})
    risk = rng.uniform(0.05, 0.95, 1000)
    outcome = (rng.uniform(size=1000) < risk).astype(int)
    overconfident = 1 / (1 + np.exp(-4 * np.log(risk / (1 - risk))))
    choice = choose_calibration(overconfident, outcome, np.arange(1000), "auto")
    assert choice.calibrator.method in ("platt", "isotonic") and set(choice.candidates) == {"none", "platt", "isotonic"}
    assert choice.candidates[choice.calibrator.method] == min(choice.candidates.values()) < choice.candidates["none"] - 0.01
    honest = choose_calibration(risk, outcome, np.arange(1000), "auto")
    assert honest.calibrator.method == "none" or honest.candidates[honest.calibrator.method] < honest.candidates["none"]


def test_platt_on_separated_scores_stays_finite_with_smoothed_targets():
    """Perfectly separated out-of-fold p(PD): an unpenalised logistic fit would send the slope to infinity;
    Platt's smoothed targets keep it finite, so raw 0.4 is not printed as 0.97 against a 0.99 threshold."""
    p_pd = np.r_[np.linspace(0.01, 0.3, 50), np.linspace(0.7, 0.99, 50)]
    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    calibrator = Calibrator.fit(p_pd, labels, "platt")
    assert calibrator.method == "platt" and 0 < calibrator.params["a"] < 10
    assert calibrator(0.4) < 0.5 < calibrator(0.6)
    unpenalised = LogisticRegression(C=1e6, max_iter=1000).fit(np.log(p_pd / (1 - p_pd))[:, None], labels)
    assert unpenalised.coef_[0, 0] > 3 * calibrator.params["a"]  # hard targets: the slope runs off (8.2 here)
    assert calibrator.raw_threshold(0.5) == pytest.approx(0.5, abs=0.05)
    assert calibrator(calibrator.raw_threshold(0.5)) == pytest.approx(0.5)


def test_wilson_and_auc_intervals_stay_open_at_the_edges():
    low, high = wilson_interval(20, 20)
    assert high == 1.0 and 0.80 < low < 0.87  # 20 of 20: 0.839-1.000
    low0, high0 = wilson_interval(0, 20)
    assert low0 == 0.0 and high0 == pytest.approx(1 - low)
    assert wilson_interval(11, 20)[0] < 0.55 < wilson_interval(11, 20)[1]
    low, high = auc_interval(1.0, 20, 20)
    assert high == 1.0 and 0.85 < low < 0.95
    low, high = auc_interval(0.8, 50, 50)
    assert low < 0.8 < high and high - low < 0.25
    assert auc_interval(0.8, 10, 10)[1] - auc_interval(0.8, 10, 10)[0] > high - low  # fewer subjects, wider
    assert widest((0.9, 0.95), (0.8, 1.0)) == (0.8, 1.0) and widest((math.nan, math.nan), (0.1, 0.2)) == (0.1, 0.2)


def test_holm_adjustment_by_hand():
    p = np.array([0.01, 0.04, math.nan, 0.03, 0.5])
    adjusted = holm_adjust(p)  # 4 tests: 0.01 * 4, 0.03 * 3, 0.04 * 2 -> monotone 0.09, 0.5 * 1 -> 0.5
    np.testing.assert_allclose(adjusted, [0.04, 0.09, math.nan, 0.09, 0.5])
    assert (holm_adjust(np.array([0.5, 0.9, 0.6])) == 1.0).all()
    assert (holm_adjust(p)[np.isfinite(p)] >= p[np.isfinite(p)]).all()


def test_isotonic_calibration_never_prints_zero_or_one():
    """Bounded by Platt's smoothed targets: a model at chance does not answer p(PD) = 0.000 or 1.000."""
    from dfer_pd.stage2.statistics import Calibrator

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    p_pd = np.where(labels == 1, rng.uniform(0.5, 1, 200), rng.uniform(0, 0.5, 200))  # separable: steps to 0 and 1
    calibrated = Calibrator.fit(p_pd, labels, "isotonic")(np.array([0.0, 0.25, 0.75, 1.0]))
    positives, negatives = labels.sum(), (labels == 0).sum()
    assert calibrated[0] == pytest.approx(1 / (negatives + 2)) and calibrated[-1] == pytest.approx((positives + 1) / (positives + 2))
    assert 0 < calibrated.min() and calibrated.max() < 1
