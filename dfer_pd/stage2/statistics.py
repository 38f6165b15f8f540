"""Statistics a reviewer can trust on a small cohort: intervals, paired tests, permutation p-values, calibration.

Pure functions on arrays, tested directly (tests/stage2/test_statistics.py):

- :func:`corrected_t_interval` and :func:`corrected_paired_ttest`: the corrected resampled t statistic of
  Nadeau and Bengio (2003), in the repeated k-fold form of Bouckaert and Frank (2004). The k x r fold
  estimates of a repeated CV are not independent (the training sets overlap), so the naive variance
  S^2 / (k r) is far too small; the correction uses (1 / (k r) + n_test / n_train) S^2 with k r - 1
  degrees of freedom.
- Floors for intervals that must not collapse when every fold scores the same (0.550-0.550, 1.000-1.000):
  :func:`wilson_interval` for a proportion of subjects and :func:`auc_interval` for a ROC AUC, a score
  interval with Hanley and McNeil's variance (Newcombe 2006), which stays open at AUC 1;
  :func:`widest` joins an interval with its floor.
- :func:`holm_adjust`: Holm's step-down adjustment of p-values for multiple comparisons.
- :func:`permutation_p_value`: (1 + #{null >= observed}) / (1 + n_permutations), which is never 0.
- :class:`Calibrator`: Platt scaling (a logistic regression on logit p, fitted to Platt's smoothed targets
  and refused unless its slope is positive) or isotonic regression, fitted on out-of-fold predictions
  and stored as JSON numbers (no pickle); :func:`choose_calibration` picks none, Platt or isotonic by
  cross-fitted Brier score.
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
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedGroupKFold



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


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``; open at 0 and 1 (at 20 of 20: 0.839-1.000).

    ``successes`` may be fractional (a mean over repeats of counts of the same ``n`` subjects). (nan, nan)
    without subjects.
    """
    if not n or n <= 0 or not math.isfinite(successes):
        return math.nan, math.nan
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    share = min(max(successes / n, 0.0), 1.0)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return max(centre - half, 0.0), min(centre + half, 1.0)


def _auc_variance(theta: float, n_pos: int, n_neg: int) -> float:
    """Hanley-McNeil variance of an AUC at ``theta`` in Newcombe's form (n* = (n_pos + n_neg) / 2 - 1)."""
    n_star = (n_pos + n_neg) / 2 - 1
    return theta * (1 - theta) / (n_pos * n_neg) * (1 + n_star * (1 - theta) / (2 - theta) + n_star * theta / (1 + theta))


def auc_interval(auc: float, n_pos: int, n_neg: int, confidence: float = 0.95) -> tuple[float, float]:
    """Score interval of a ROC AUC from ``n_pos`` PD and ``n_neg`` HC subjects (Newcombe 2006, method 5).

    The limits are the thetas where ``(auc - theta)^2 = z^2 Var(theta)``, with Hanley and McNeil's variance
    evaluated at theta rather than at the observed AUC: unlike the Wald form, it does not collapse at AUC
    0 or 1 (20 PD and 20 HC at AUC 1: 0.905-1.000).
    """
    if not math.isfinite(auc) or n_pos < 1 or n_neg < 1:
        return math.nan, math.nan
    from scipy.optimize import brentq

    z2 = float(stats.norm.ppf(0.5 + confidence / 2)) ** 2

    def gap(theta: float) -> float:  # > 0 outside the interval, <= 0 inside
        return (auc - theta) ** 2 - z2 * _auc_variance(theta, n_pos, n_neg)

    def limit(start: float, end: float) -> float:  # the crossing between ``start`` (the AUC) and ``end`` (0 or 1)
        thetas = np.linspace(start, end, 1001)
        outside = np.flatnonzero([gap(t) > 0 for t in thetas[1:]])
        if not len(outside):
            return end
        k = int(outside[0]) + 1
        return float(brentq(gap, thetas[k - 1], thetas[k])) if gap(thetas[k - 1]) < 0 else float(thetas[k - 1])

    return limit(auc, 0.0), limit(auc, 1.0)


def widest(interval: tuple[float, float], floor: tuple[float, float]) -> tuple[float, float]:
    """The interval joined with its floor (the lower of the lows, the higher of the highs); NaN limits are ignored."""
    lows = [x for x in (interval[0], floor[0]) if math.isfinite(x)]
    highs = [x for x in (interval[1], floor[1]) if math.isfinite(x)]
    return (min(lows) if lows else math.nan), (max(highs) if highs else math.nan)


def holm_adjust(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control over all of them); NaNs stay NaN and
    do not count as tests. The i-th smallest of m is multiplied by m - i + 1, kept monotone and capped at 1."""
    p_values = np.asarray(p_values, dtype=np.float64)
    out = np.full(p_values.shape, math.nan)
    tested = np.flatnonzero(np.isfinite(p_values))
    order = tested[np.argsort(p_values[tested], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p_values[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


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


FITTED_CALIBRATIONS: tuple[str, ...] = ("none", "platt", "isotonic")
"""What a :class:`Calibrator` can be; ``auto`` (:func:`choose_calibration`) picks one of them."""


def platt_fit(p_pd: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt's (1999) fit of sigmoid(a * logit(p) + b): a logistic regression on logit p whose targets are
    smoothed to (N+ + 1) / (N+ + 2) for PD and 1 / (N- + 2) for HC, so perfectly separated out-of-fold
    predictions cannot drive the slope to infinity (no other penalty)."""
    from scipy.optimize import minimize

    x, labels = _logit(p_pd), np.asarray(labels)
    n_pos, n_neg = int((labels == 1).sum()), int((labels != 1).sum())
    target = np.where(labels == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = params[0] * x + params[1]
        residual = 1 / (1 + np.exp(-z)) - target
        return float(np.sum(np.logaddexp(0, z) - target * z)), np.array([residual @ x, residual.sum()])

    prior = math.log((n_pos + 1) / (n_neg + 1))
    fitted = minimize(loss, np.array([0.0, prior]), jac=True, method="L-BFGS-B")
    return float(fitted.x[0]), float(fitted.x[1])


@dataclass
class Calibrator:
    """A map from the classifier's p(PD) to a calibrated p(PD), stored as plain numbers.

    ``platt``: p' = sigmoid(a * logit(p) + b) with a > 0; ``isotonic``: p' = piecewise-linear through the
    fitted (x, y) thresholds, clipped outside them (what ``IsotonicRegression(out_of_bounds="clip").predict``
    does); ``none``: p' = p. Both maps are non-decreasing, so a calibrated p(PD) never ranks a subject
    against the classifier. ``note`` says why a requested calibration was not applied.
    """

    method: str = "none"
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @classmethod
    def fit(cls, p_pd: np.ndarray, labels: np.ndarray, method: str = "platt") -> Calibrator:
        """Fit ``method`` (none, platt or isotonic). A Platt fit whose slope is not positive (the classifier's
        p(PD) falls as PD becomes likelier, as on shuffled labels) is refused: the result is ``none``, with
        the slope in ``params`` and the reason in ``note``."""
        p_pd, labels = np.asarray(p_pd, dtype=np.float64).ravel(), np.asarray(labels).ravel()
        if method not in FITTED_CALIBRATIONS:
            raise ValueError(f"calibration must be one of {FITTED_CALIBRATIONS}, got {method!r}")
        if len(p_pd) != len(labels):
            raise ValueError(f"{len(p_pd)} probabilities but {len(labels)} labels")
        if method == "none":
            return cls("none")
        if len(np.unique(labels)) != 2:
            raise ValueError("calibration needs predictions for both HC and PD subjects")
        if method == "platt":
            a, b = platt_fit(p_pd, labels)
            if not a > 0:
                return cls("none", {"platt_a": a, "platt_b": b},
                           f"Platt's slope came out {a:.3g} (not positive: out of fold, p(PD) does not rise with PD), "
                           "so p(PD) is left uncalibrated")
            return cls("platt", {"a": a, "b": b})
        # Bounded by Platt's smoothed targets, 1 / (N- + 2) and (N+ + 1) / (N+ + 2): a few subjects never
        # make p(PD) exactly 0 or 1.
        positives, negatives = int(np.sum(labels == 1)), int(np.sum(labels == 0))
        model = IsotonicRegression(y_min=1.0 / (negatives + 2), y_max=(positives + 1.0) / (positives + 2),
                                   out_of_bounds="clip").fit(p_pd, labels)
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

    def raw_threshold(self, threshold: float) -> float:
        """The smallest raw p(PD) whose calibrated p(PD) reaches ``threshold`` (nan if none does)."""
        if self.method == "none":
            return float(threshold)
        if self.method == "platt":
            return float(1 / (1 + math.exp(-(float(_logit(threshold)) - self.params["b"]) / self.params["a"])))
        x, y = np.asarray(self.params["x"]), np.asarray(self.params["y"])
        if not (y >= threshold).any():
            return math.nan
        k = int(np.argmax(y >= threshold))
        if k == 0 or y[k] == y[k - 1]:
            return float(x[k]) if k else 0.0
        return float(x[k - 1] + (threshold - y[k - 1]) * (x[k] - x[k - 1]) / (y[k] - y[k - 1]))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params, **({"note": self.note} if self.note else {})}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Calibrator:
        if not values:
            return cls("none")
        method = values.get("method")
        params = values.get("params") or {}
        needed = {"platt": {"a", "b"}, "isotonic": {"x", "y"}, "none": set()}.get(method)
        if needed is None or not needed <= set(params):
            raise ValueError(f"calibration {values!r} is not a platt, isotonic or none calibration with its parameters")
        if method == "platt" and not params["a"] > 0:
            raise ValueError(f"calibration {values!r}: a Platt slope must be positive")
        return cls(method, dict(params), str(values.get("note") or ""))


def cross_fitted_calibration(p_pd: np.ndarray, labels: np.ndarray, groups: np.ndarray, method: str,
                             n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Calibrated out-of-fold probabilities, each subject's from a calibrator fitted without that subject.

    ``groups`` (subject ids) keep all of a subject's predictions (one per repeat) on the same side, so the
    Brier score of the result is an honest estimate of the calibrated model's, not a fit to itself.
    """
    p_pd, labels, groups = np.asarray(p_pd, dtype=np.float64), np.asarray(labels), np.asarray(groups)
    if method == "none":
        return p_pd.copy()
    out = np.empty_like(p_pd)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train, test in splitter.split(p_pd, labels, groups):
        out[test] = Calibrator.fit(p_pd[train], labels[train], method)(p_pd[test])
    return out


@dataclass
class CalibrationChoice:
    """The calibrator to deploy, its cross-fitted p(PD) and every candidate's cross-fitted Brier score."""

    calibrator: Calibrator
    cross_fitted: np.ndarray
    candidates: dict[str, float]


def choose_calibration(p_pd: np.ndarray, labels: np.ndarray, groups: np.ndarray, method: str = "auto",
                       seed: int = 0) -> CalibrationChoice:
    """``auto``: of none, Platt and isotonic, the one whose cross-fitted Brier score is lowest (a more complex
    map must score strictly better than a simpler one); otherwise ``method`` itself. The chosen map is then
    fitted on all predictions; a Platt fit whose slope is not positive falls back to none (see :meth:`Calibrator.fit`)."""
    p_pd, labels = np.asarray(p_pd, dtype=np.float64), np.asarray(labels)
    candidates = FITTED_CALIBRATIONS if method == "auto" else (method,)
    if method != "auto" and method not in FITTED_CALIBRATIONS:
        raise ValueError(f"calibration must be auto or one of {FITTED_CALIBRATIONS}, got {method!r}")
    honest = {m: cross_fitted_calibration(p_pd, labels, groups, m, seed=seed) for m in candidates}
    briers = {m: brier_score(labels, honest[m]) for m in candidates}
    chosen = candidates[0]
    for m in candidates[1:]:
        if briers[m] < briers[chosen]:
            chosen = m
    calibrator = Calibrator.fit(p_pd, labels, chosen)
    cross_fitted = honest[chosen] if calibrator.method == chosen else p_pd.copy()
    return CalibrationChoice(calibrator, cross_fitted, briers)
