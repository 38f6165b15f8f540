"""Statistics a reviewer can trust on a small cohort: intervals, paired tests, permutation p-values, calibration.

Pure functions on arrays, tested directly (tests/stage2/test_statistics.py):

- :func:`corrected_t_interval` and :func:`corrected_paired_ttest`: the corrected resampled t statistic of
  Nadeau and Bengio (2003), in the repeated k-fold form of Bouckaert and Frank (2004). The k x r fold
  estimates of a repeated CV are not independent (the training sets overlap), so the naive variance
  S^2 / (k r) is far too small; the correction uses (1 / (k r) + n_test / n_train) S^2 with k r - 1
  degrees of freedom.
- :func:`permutation_p_value`: (1 + #{null >= observed}) / (1 + n_permutations), which is never 0.
- :class:`Calibrator`: Platt scaling (a logistic regression on logit p) or isotonic regression from
  scikit-learn, fitted on out-of-fold predictions and stored as JSON numbers (no pickle).
- :func:`brier_score`, :func:`reliability_curve`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedGroupKFold

from dfer_pd.stage2.settings import CALIBRATION_METHODS


def _corrected_se(values: np.ndarray, n_train: float, n_test: float) -> tuple[float, int]:
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return math.nan, max(len(values) - 1, 0)
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train and n_test must be positive, got {n_train} and {n_test}")
    variance = np.var(values, ddof=1) * (1.0 / len(values) + n_test / n_train)
    return float(np.sqrt(variance)), len(values) - 1


def corrected_t_interval(values: np.ndarray, n_train: float, n_test: float,
                         confidence: float = 0.95) -> tuple[float, float]:
    """Interval for the expected score from the k x r fold scores of a repeated k-fold CV (Nadeau-Bengio variance).

    ``n_train`` / ``n_test`` are the (average) numbers of subjects in a training / test fold. NaN scores
    (e.g. an AUC on a one-class fold) are left out. With fewer than two scores the interval is (nan, nan).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    se, df = _corrected_se(values, n_train, n_test)
    if not math.isfinite(se):
        return math.nan, math.nan
    mean = float(np.nanmean(values))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return mean - half, mean + half


@dataclass
class PairedTest:
    """Corrected resampled paired t-test of two models scored on the same folds (a minus b)."""

    mean_difference: float
    t: float
    df: int
    p_value: float

    def to_dict(self) -> dict[str, float]:
        return {"mean_difference": self.mean_difference, "t": self.t, "df": self.df, "p_value": self.p_value}


def corrected_paired_ttest(a: np.ndarray, b: np.ndarray, n_train: float, n_test: float) -> PairedTest:
    """Two-sided corrected resampled t-test of ``a - b``, fold by fold (same repeats and folds, same order).

    Identical scores on every fold give difference 0 and p = 1; a constant non-zero difference gives p = 0.
    """
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same folds, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    if len(diff) < 2:
        return PairedTest(float(np.mean(diff)) if len(diff) else math.nan, math.nan, max(len(diff) - 1, 0), math.nan)
    mean = float(diff.mean())
    se, df = _corrected_se(diff, n_train, n_test)
    if se == 0:
        return PairedTest(mean, 0.0 if mean == 0 else math.copysign(math.inf, mean), df, 1.0 if mean == 0 else 0.0)
    t = mean / se
    return PairedTest(mean, float(t), df, float(2 * stats.t.sf(abs(t), df)))


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """One-sided p-value of ``observed`` against a permutation null (larger is better): (1 + #{null >= obs}) / (1 + n)."""
    null = np.asarray(null, dtype=np.float64).ravel()
    null = null[np.isfinite(null)]
    if not math.isfinite(observed):
        return math.nan
    return float((1 + np.sum(null >= observed)) / (1 + len(null)))


def brier_score(labels: np.ndarray, p_pd: np.ndarray) -> float:
    """Mean squared error of p(PD) against the 0/1 labels (0 is perfect; 0.25 is p = 0.5 for everyone)."""
    return float(brier_score_loss(np.asarray(labels), np.clip(np.asarray(p_pd, dtype=np.float64), 0, 1)))


def reliability_curve(labels: np.ndarray, p_pd: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Observed PD frequency against mean predicted p(PD) per bin of equal width (empty bins left out), with counts."""
    labels, p_pd = np.asarray(labels), np.clip(np.asarray(p_pd, dtype=np.float64), 0, 1)
    observed, predicted = calibration_curve(labels, p_pd, n_bins=n_bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.clip(np.searchsorted(edges[1:-1], p_pd, side="right"), 0, n_bins - 1), minlength=n_bins)
    return {"predicted": predicted.tolist(), "observed": observed.tolist(), "count": counts[counts > 0].tolist()}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


@dataclass
class Calibrator:
    """A map from the classifier's p(PD) to a calibrated p(PD), stored as plain numbers.

    ``platt``: p' = sigmoid(a * logit(p) + b); ``isotonic``: p' = piecewise-linear through the fitted
    (x, y) thresholds, clipped outside them (what ``IsotonicRegression(out_of_bounds="clip").predict`` does);
    ``none``: p' = p.
    """

    method: str = "none"
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, p_pd: np.ndarray, labels: np.ndarray, method: str = "platt") -> Calibrator:
        p_pd, labels = np.asarray(p_pd, dtype=np.float64).ravel(), np.asarray(labels).ravel()
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration must be one of {CALIBRATION_METHODS}, got {method!r}")
        if len(p_pd) != len(labels):
            raise ValueError(f"{len(p_pd)} probabilities but {len(labels)} labels")
        if method == "none":
            return cls("none")
        if len(np.unique(labels)) != 2:
            raise ValueError("calibration needs predictions for both HC and PD subjects")
        if method == "platt":
            model = LogisticRegression(C=1e4).fit(_logit(p_pd)[:, None], labels)
            return cls("platt", {"a": float(model.coef_[0, 0]), "b": float(model.intercept_[0])})
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p_pd, labels)
        return cls("isotonic", {"x": model.X_thresholds_.tolist(), "y": model.y_thresholds_.tolist()})

    def __call__(self, p_pd: np.ndarray | float) -> np.ndarray | float:
        values = np.asarray(p_pd, dtype=np.float64)
        if self.method == "none":
            out = values
        elif self.method == "platt":
            out = 1.0 / (1.0 + np.exp(-(self.params["a"] * _logit(values) + self.params["b"])))
        elif self.method == "isotonic":
            out = np.interp(values, self.params["x"], self.params["y"])
        else:
            raise ValueError(f"unknown calibration method {self.method!r}")
        return float(out) if np.ndim(p_pd) == 0 else out

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Calibrator:
        if not values:
            return cls("none")
        method = values.get("method")
        params = values.get("params") or {}
        needed = {"platt": {"a", "b"}, "isotonic": {"x", "y"}, "none": set()}.get(method)
        if needed is None or not needed <= set(params):
            raise ValueError(f"calibration {values!r} is not a platt, isotonic or none calibration with its parameters")
        return cls(method, dict(params))


def cross_fitted_calibration(p_pd: np.ndarray, labels: np.ndarray, groups: np.ndarray, method: str,
                             n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Calibrated out-of-fold probabilities, each subject's from a calibrator fitted without that subject.

    ``groups`` (subject ids) keep all of a subject's predictions (one per repeat) on the same side, so the
    Brier score of the result is an honest estimate of the calibrated model's, not a fit to itself.
    """
    p_pd, labels, groups = np.asarray(p_pd, dtype=np.float64), np.asarray(labels), np.asarray(groups)
    out = np.empty_like(p_pd)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train, test in splitter.split(p_pd, labels, groups):
        out[test] = Calibrator.fit(p_pd[train], labels[train], method)(p_pd[test])
    return out
