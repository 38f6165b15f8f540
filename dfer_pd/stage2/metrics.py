"""The stage-2 metrics (scikit-learn, the one way they are computed) and the cross-validation result they fill.

``classification_metrics`` is what every fold, summary, W&B key and Table 3 cell reports; the training
module logs the same function on its validation split.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

if TYPE_CHECKING:
    from dfer_pd.stage2.classifiers import ClassifierConfig
    from dfer_pd.stage2.splits import CVConfig

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
)
"""Per-fold metrics. ``*_binary`` treat PD as the positive class; ``*_weighted`` average both classes by support."""


def classification_metrics(labels: np.ndarray, p_pd: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """:data:`METRIC_NAMES` for one set of predictions; ROC AUC is NaN when only one class is present."""
    labels = np.asarray(labels)
    predicted = (np.asarray(p_pd) >= threshold).astype(np.int64)
    metrics = {"accuracy": accuracy_score(labels, predicted)}
    for average in ("binary", "weighted"):
        metrics[f"precision_{average}"] = precision_score(labels, predicted, average=average, zero_division=0)
        metrics[f"recall_{average}"] = recall_score(labels, predicted, average=average, zero_division=0)
        metrics[f"f1_{average}"] = f1_score(labels, predicted, average=average, zero_division=0)
    metrics["roc_auc"] = roc_auc_score(labels, p_pd) if len(np.unique(labels)) == 2 else math.nan
    metrics["sensitivity"] = recall_score(labels, predicted, pos_label=1, zero_division=0)
    metrics["specificity"] = recall_score(labels, predicted, pos_label=0, zero_division=0)
    return {name: float(metrics[name]) for name in METRIC_NAMES}


def confusion_counts(labels: np.ndarray, p_pd: np.ndarray, threshold: float) -> np.ndarray:
    """2x2 counts, rows = true (HC, PD), columns = predicted (HC, PD)."""
    return confusion_matrix(labels, (np.asarray(p_pd) >= threshold).astype(np.int64), labels=[0, 1])


@dataclass
class CVResult:
    """Per-fold metrics (``folds``: one row per seed and fold), out-of-fold predictions and their summary."""

    config: ClassifierConfig
    cv: CVConfig
    folds: pd.DataFrame
    predictions: pd.DataFrame

    @property
    def mean(self) -> dict[str, float]:
        """Mean over all (seed, fold) pairs."""
        return {name: float(self.folds[name].mean()) for name in METRIC_NAMES}

    @property
    def std(self) -> dict[str, float]:
        """Sample standard deviation over all (seed, fold) pairs."""
        return {name: float(self.folds[name].std()) for name in METRIC_NAMES}

    @property
    def pooled(self) -> dict[str, float]:
        """Metrics of all out-of-fold predictions at once, averaged over seeds."""
        per_seed = [
            classification_metrics(group["label"], group["p_pd"], self.cv.threshold)
            for _, group in self.predictions.groupby("seed")
        ]
        return {name: float(np.mean([m[name] for m in per_seed])) for name in METRIC_NAMES}

    @property
    def confusion_matrix(self) -> np.ndarray:
        """Counts summed over folds and seeds; rows = true (HC, PD), columns = predicted (HC, PD)."""
        return self.folds[["tn", "fp", "fn", "tp"]].sum().to_numpy().reshape(2, 2)

    def summary(self) -> dict[str, float]:
        """``cv/<metric>_mean`` and ``cv/<metric>_std``: the keys a W&B sweep optimises."""
        out = {f"cv/{name}_mean": value for name, value in self.mean.items()}
        out.update({f"cv/{name}_std": value for name, value in self.std.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "cv": asdict(self.cv),
            "mean": self.mean,
            "std": self.std,
            "pooled": self.pooled,
            "confusion_matrix": {"rows_true": ["HC", "PD"], "cols_pred": ["HC", "PD"],
                                 "counts": self.confusion_matrix.tolist()},
            "folds": self.folds.to_dict(orient="records"),
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write ``predictions.csv``, ``folds.csv`` and ``metrics.json`` into ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.predictions.to_csv(out_dir / "predictions.csv", index=False)
        self.folds.to_csv(out_dir / "folds.csv", index=False)
        (out_dir / "metrics.json").write_text(json.dumps(json_safe(self.to_dict()), indent=2))
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
