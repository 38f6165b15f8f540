"""The stage-2 metrics (the one way they are computed) and the cross-validation result they fill.

``classification_metrics`` is what every fold, summary, W&B key and Table 3 cell reports; the training
module logs the same function on its validation split. It computes scikit-learn's definitions
(``zero_division=0``) from the 2x2 counts and ROC AUC from ranks: a repeated CV, a Table 3 or a
permutation test calls it thousands of times, and scikit-learn's input validation cost more than the
networks (``tests/stage2/test_crossval.py`` checks it against scikit-learn).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

if TYPE_CHECKING:
    from dfer_pd.stage2.settings import ClassifierConfig
    from dfer_pd.stage2.settings import CVConfig

METRIC_NAMES: tuple[str, ...] = (
    "accuracy",
    "precision_binary",
    "recall_binary",
    "f1_binary",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "roc_auc",
    "sensitivity",
    "specificity",
    "brier",
)
"""Per-fold metrics. ``*_binary`` treat PD as the positive class; ``*_weighted`` average both classes by support;
``brier`` is the mean squared error of p(PD) (lower is better)."""


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic (ties count half); NaN without both classes."""
    labels = np.asarray(labels)
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not n_pos or not n_neg:
        return math.nan
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(labels: np.ndarray, p_pd: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """:data:`METRIC_NAMES` for one set of predictions; ROC AUC is NaN when only one class is present."""
    labels = np.asarray(labels)
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 (HC) or 1 (PD), got {sorted(set(np.unique(labels).tolist()))}")
    p_pd = np.asarray(p_pd, dtype=np.float64)
    (tn, fp), (fn, tp) = confusion_counts(labels, p_pd, threshold)
    n_pd, n_hc, n = tp + fn, tn + fp, tn + fp + fn + tp
    # Per class: precision, recall and F1 with that class as the positive one.
    pd_scores = (_ratio(tp, tp + fp), _ratio(tp, n_pd), _ratio(2 * tp, 2 * tp + fp + fn))
    hc_scores = (_ratio(tn, tn + fn), _ratio(tn, n_hc), _ratio(2 * tn, 2 * tn + fn + fp))
    weighted = [_ratio(n_pd * p + n_hc * h, n) for p, h in zip(pd_scores, hc_scores)]
    return {
        "accuracy": _ratio(tp + tn, n),
        "precision_binary": pd_scores[0], "recall_binary": pd_scores[1], "f1_binary": pd_scores[2],
        "precision_weighted": weighted[0], "recall_weighted": weighted[1], "f1_weighted": weighted[2],
        "roc_auc": roc_auc(labels, p_pd),
        "sensitivity": pd_scores[1],
        "specificity": hc_scores[1],
        "brier": float(np.mean((np.clip(p_pd, 0, 1) - labels) ** 2)) if n else math.nan,
    }


def confusion_counts(labels: np.ndarray, p_pd: np.ndarray, threshold: float) -> np.ndarray:
    """2x2 counts, rows = true (HC, PD), columns = predicted (HC, PD)."""
    labels = np.asarray(labels).astype(np.int64)
    predicted = (np.asarray(p_pd) >= threshold).astype(np.int64)
    return np.bincount(2 * labels + predicted, minlength=4).reshape(2, 2)


@dataclass
class CVResult:
    """Per-fold metrics and out-of-fold predictions of a (repeated) k-fold CV, and their summaries.

    ``folds`` has one row per (repeat, seed, fold) with ``n_train``, ``n_test``, the metrics and the
    confusion counts; ``predictions`` one row per subject, repeat and seed. A repeat is one complete
    k-fold CV on its own folds. Figures are summarised over repeats: the mean, the standard deviation
    of the repeat means (of the folds when there is one repeat) and an interval from the fold scores
    with the Nadeau-Bengio correction (:func:`dfer_pd.stage2.statistics.corrected_t_interval`), floored by
    a binomial interval on the pooled out-of-fold counts (:attr:`interval_floor`).
    ``histories`` holds the residual networks' per-epoch curves (repeat, seed, fold, epoch, losses).
    """

    config: ClassifierConfig
    cv: CVConfig
    folds: pd.DataFrame
    predictions: pd.DataFrame
    histories: pd.DataFrame | None = None
    confidence: float = 0.95

    @property
    def repeats(self) -> int:
        return int(self.folds["repeat"].nunique()) if "repeat" in self.folds else 1

    def fold_scores(self, metric: str) -> np.ndarray:
        """(repeats, folds) scores of ``metric``, averaged over training seeds: the values paired tests compare."""
        folds = self.folds if "repeat" in self.folds else self.folds.assign(repeat=0)
        table = folds.groupby(["repeat", "fold"])[metric].mean().unstack("fold")
        return table.sort_index().to_numpy(dtype=np.float64)

    @property
    def fold_sizes(self) -> tuple[float, float]:
        """Average numbers of training and test subjects per fold (the Nadeau-Bengio correction uses their ratio)."""
        n_test = float(self.folds["n_test"].mean())
        n_train = float(self.folds["n_train"].mean()) if "n_train" in self.folds else n_test * (self.cv.n_splits - 1)
        return n_train, n_test

    @functools.cached_property
    def per_repeat(self) -> pd.DataFrame:
        """One row per repeat: each metric's mean over folds, and ``oof_<metric>`` of all out-of-fold predictions."""
        folds = self.folds if "repeat" in self.folds else self.folds.assign(repeat=0)
        predictions = self.predictions if "repeat" in self.predictions else self.predictions.assign(repeat=0)
        rows = folds.groupby("repeat")[list(METRIC_NAMES)].mean()
        pooled = []
        for repeat, group in predictions.groupby("repeat"):
            per_seed = [classification_metrics(g["label"], g["p_pd"], self.cv.threshold) for _, g in group.groupby("seed")]
            pooled.append({"repeat": repeat, **{f"oof_{name}": float(np.mean([m[name] for m in per_seed]))
                                                 for name in METRIC_NAMES}})
        return rows.join(pd.DataFrame(pooled).set_index("repeat")).reset_index()

    @property
    def mean(self) -> dict[str, float]:
        """Mean over repeats (each repeat: mean over its folds and seeds)."""
        repeats = self.per_repeat
        return {name: float(repeats[name].mean()) for name in METRIC_NAMES}

    @property
    def std(self) -> dict[str, float]:
        """Sample std of the repeat means over repeats; with a single repeat, over its (seed, fold) scores."""
        if self.repeats > 1:
            repeats = self.per_repeat
            return {name: float(repeats[name].std()) for name in METRIC_NAMES}
        return {name: float(self.folds[name].std()) for name in METRIC_NAMES}

    @property
    def std_over(self) -> str:
        return "repeats" if self.repeats > 1 else "folds"

    @property
    def interval(self) -> dict[str, tuple[float, float]]:
        """``confidence`` interval of each metric from the fold scores (Nadeau-Bengio corrected resampled t),
        never narrower than its floor (:meth:`interval_floor`), so folds that all score the same do not give
        a zero-width interval."""
        from dfer_pd.stage2.statistics import corrected_t_interval, widest

        n_train, n_test = self.fold_sizes
        floors = self.interval_floor
        out = {}
        for name in METRIC_NAMES:  # every metric lives in [0, 1]: the interval is clipped to it
            low, high = corrected_t_interval(self.fold_scores(name), n_train, n_test, self.confidence)
            low, high = (max(low, 0.0), min(high, 1.0)) if math.isfinite(low) else (low, high)
            out[name] = widest((low, high), floors[name]) if name in floors else (low, high)
        return out

    @property
    def interval_floor(self) -> dict[str, tuple[float, float]]:
        """Binomial intervals on the pooled out-of-fold counts, one subject counted once: Wilson for a
        proportion (accuracy and the weighted figures over all subjects, sensitivity and binary recall and F1
        over the PD subjects, specificity over the HC ones, binary precision over those called PD) and
        Newcombe's Hanley-McNeil score interval for the ROC AUC. The Brier score has none."""
        from dfer_pd.stage2.statistics import auc_interval, wilson_interval

        subjects = self.predictions.drop_duplicates("subject_id")
        n, n_pd = len(subjects), int((subjects["label"] == 1).sum())
        called_pd = float((self.predictions["p_pd"] >= self.cv.threshold).sum()) / max(len(self.predictions) / max(n, 1), 1)
        sizes = {"accuracy": n, "recall_weighted": n, "precision_weighted": n, "f1_weighted": n,
                 "sensitivity": n_pd, "recall_binary": n_pd, "f1_binary": n_pd, "specificity": n - n_pd,
                 "precision_binary": called_pd}
        pooled = self.pooled
        floors = {name: wilson_interval(pooled[name] * size, size, self.confidence) for name, size in sizes.items()}
        floors["roc_auc"] = auc_interval(pooled["roc_auc"], n_pd, n - n_pd, self.confidence)
        return floors

    @property
    def pooled(self) -> dict[str, float]:
        """Metrics of all out-of-fold predictions at once (per repeat and seed), averaged."""
        repeats = self.per_repeat
        return {name: float(repeats[f"oof_{name}"].mean()) for name in METRIC_NAMES}

    @property
    def pooled_std(self) -> dict[str, float]:
        """Std over repeats of the out-of-fold metrics (NaN with one repeat)."""
        repeats = self.per_repeat
        return {name: float(repeats[f"oof_{name}"].std()) if len(repeats) > 1 else math.nan for name in METRIC_NAMES}

    @property
    def confusion_matrix(self) -> np.ndarray:
        """Counts summed over folds, seeds and repeats; rows = true (HC, PD), columns = predicted (HC, PD)."""
        return self.folds[["tn", "fp", "fn", "tp"]].sum().to_numpy().reshape(2, 2)

    def figures(self, prefix: str = "") -> dict[str, float]:
        """``<prefix><metric>_mean``, ``_std``, ``_ci_low``, ``_ci_high``, ``<prefix>oof_<metric>_mean`` and ``_std``."""
        out: dict[str, float] = {}
        mean, std, interval = self.mean, self.std, self.interval
        pooled, pooled_std = self.pooled, self.pooled_std
        for name in METRIC_NAMES:
            out[f"{prefix}{name}_mean"], out[f"{prefix}{name}_std"] = mean[name], std[name]
            out[f"{prefix}{name}_ci_low"], out[f"{prefix}{name}_ci_high"] = interval[name]
            out[f"{prefix}oof_{name}_mean"], out[f"{prefix}oof_{name}_std"] = pooled[name], pooled_std[name]
        return out

    def summary(self) -> dict[str, float]:
        """Flat figures for W&B and sweeps: ``cv/<metric>_mean``, ``_std``, ``_ci_low``, ``_ci_high`` and
        ``cv/oof_<metric>_mean`` / ``_std`` (out-of-fold), plus the design (repeats, folds, subjects per fold)."""
        out = self.figures("cv/")
        n_train, n_test = self.fold_sizes
        out.update({"cv/repeats": float(self.repeats), "cv/n_splits": float(self.cv.n_splits),
                    "cv/n_train": n_train, "cv/n_test": n_test, "cv/confidence": self.confidence})
        return out

    def describe(self, metric: str = "accuracy") -> str:
        """``0.880 ± 0.012 (95% CI 0.812-0.948)``: the way figures are printed."""
        low, high = self.interval[metric]
        return (f"{self.mean[metric]:.3f} ± {self.std[metric]:.3f} "
                f"({self.confidence:.0%} CI {low:.3f}-{high:.3f})")

    def to_dict(self) -> dict[str, Any]:
        interval = self.interval
        return {
            "config": asdict(self.config),
            "cv": asdict(self.cv),
            "repeats": self.repeats,
            "std_over": self.std_over,
            "confidence": self.confidence,
            "mean": self.mean,
            "std": self.std,
            "ci_low": {name: low for name, (low, _) in interval.items()},
            "ci_high": {name: high for name, (_, high) in interval.items()},
            "pooled": self.pooled,
            "pooled_std": self.pooled_std,
            "summary": self.summary(),
            "per_repeat": self.per_repeat.to_dict(orient="records"),
            "confusion_matrix": {"rows_true": ["HC", "PD"], "cols_pred": ["HC", "PD"],
                                 "counts": self.confusion_matrix.tolist()},
            "folds": self.folds.to_dict(orient="records"),
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write ``predictions.csv``, ``folds.csv``, ``repeats.csv``, ``metrics.json`` (and ``curves.csv``) into ``out_dir``."""
        from dfer_pd.common.files import atomic_write_json

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.predictions.to_csv(out_dir / "predictions.csv", index=False)
        self.folds.to_csv(out_dir / "folds.csv", index=False)
        self.per_repeat.to_csv(out_dir / "repeats.csv", index=False)
        if self.histories is not None and len(self.histories):
            self.histories.to_csv(out_dir / "curves.csv", index=False)
        atomic_write_json(out_dir / "metrics.json", json_safe(self.to_dict()))
        return out_dir


def json_safe(value: Any) -> Any:
    """NaN becomes null so metrics.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
